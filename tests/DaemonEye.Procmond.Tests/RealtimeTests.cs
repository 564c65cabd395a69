using System.Diagnostics;
using DaemonEye.Client;
using DaemonEye.Collectors.Procmond;
using DaemonEye.Collectors.Procmond.Proc;
using DaemonEye.Native;
using DaemonEye.Native.Netlink;
using DaemonEye.Protocol.Process.V1;
using DaemonEye.Protocol.V1;
using Google.Protobuf;
using Microsoft.Extensions.Logging.Abstractions;

namespace DaemonEye.Procmond.Tests;

/// <summary>procmond's real-time source with the real kernel connector and real child processes
/// (root). What it publishes is recorded at the SDK's boundary (ICollectorContext); the bus path is
/// covered by the end-to-end tests.</summary>
public sealed class RealtimeTests
{
    /// <summary>Guard against a hang; no test waits on time for its result.</summary>
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(120);

    [RootFact]
    public async Task A_short_lived_child_started_after_the_listener_is_up_is_seen_started_and_exited_with_its_code()
    {
        await using var run = await MonitorRun.StartAsync();
        Assert.Equal("connector", run.Monitor.Source);
        var pid = Run("/bin/sh", "-c", "exit 7");

        var exited = await run.Context.WaitAsync<ProcessLifecycle>(ProcessMonitor.LifecycleTopic, l => l.Kind == ProcessLifecycleKind.Exited && l.Process.Pid == pid);
        var started = run.Context.Published<ProcessLifecycle>(ProcessMonitor.LifecycleTopic).Single(l => l.Kind == ProcessLifecycleKind.Started && l.Process.Pid == pid);
        Assert.Equal("connector", started.Source);
        Assert.Equal(["/bin/sh", "-c", "exit 7"], started.Process.CommandLine.Concat(started.Process.MissingFields.Contains("command_line") ? ["/bin/sh", "-c", "exit 7"] : []).Take(3));
        Assert.True(exited.ExitStatusKnown);
        Assert.Equal(7, exited.ExitCode);
        Assert.Equal(0, exited.ExitSignal);
        Assert.Equal("connector", exited.Source);
        Assert.Equal((uint)Environment.ProcessId, started.Process.Ppid);
        Assert.Contains(run.Context.Published<ProcessReparented>(ProcessMonitor.TreeTopic), t => t.Change == TreeChange.Forked && t.Pid == pid);
    }

    [RootFact]
    public async Task Two_thousand_short_lived_processes_each_get_a_started_and_an_exited_event_with_their_exit_code()
    {
        await using var run = await MonitorRun.StartAsync();
        const int count = 2000;
        var shell = Run("/bin/sh", "-c", $"i=0; while [ $i -lt {count} ]; do /bin/false; i=$((i+1)); done; exit 0");
        await run.Context.WaitAsync<ProcessLifecycle>(ProcessMonitor.LifecycleTopic, l => l.Kind == ProcessLifecycleKind.Exited && l.Process.Pid == shell);

        var events = run.Context.Published<ProcessLifecycle>(ProcessMonitor.LifecycleTopic).Where(l => l.Process.Ppid == shell).ToList();
        var started = events.Where(l => l.Kind == ProcessLifecycleKind.Started).Select(l => l.Process.Pid).ToHashSet();
        var exited = events.Where(l => l.Kind == ProcessLifecycleKind.Exited && l.ExitStatusKnown && l.ExitCode == 1).Select(l => l.Process.Pid).ToHashSet();
        var both = started.Intersect(exited).Count();
        var missed = run.Monitor.Connector!.Connector.Lost + run.Monitor.Connector.QueueFull;
        Assert.True(both >= count * 999 / 1000, $"{both} of {count} seen started and exited (counted lost: {missed})");
        Assert.True(both + missed >= count, $"{count - both} processes neither seen nor counted");
    }

    [RootFact]
    public async Task Exec_from_dev_shm_raises_volatile_exec_with_the_process_record()
    {
        var copy = $"/dev/shm/procmond-test-{Environment.ProcessId}";
        // A process that stays: one that exits at once may be a zombie before /proc/<pid>/exe is
        // read, and then its path is a missing field (partial), which no path check can use.
        File.Copy("/bin/sleep", copy, overwrite: true);
        File.SetUnixFileMode(copy, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        try
        {
            await using var run = await MonitorRun.StartAsync();
            using var child = Start(copy, "600");
            try
            {
                var anomaly = await run.Context.WaitAsync<ProcessAnomaly>(ProcessMonitor.AnomalyTopic, a => a.Process.Pid == child.Id);
                Assert.Equal(AnomalyChecks.VolatileExec, anomaly.Check);
                Assert.Equal(copy, anomaly.Process.Executable);
                Assert.Equal("/dev/shm", anomaly.Details["directory"]);
            }
            finally
            {
                Kill(child);
            }
        }
        finally
        {
            File.Delete(copy);
        }
    }

    [RootFact]
    public async Task Strace_attaching_to_another_process_raises_ptrace_attach()
    {
        await using var run = await MonitorRun.StartAsync();
        using var target = Start("/bin/sleep", "600");
        using var tracer = Start("/usr/bin/strace", "-p", target.Id.ToString(System.Globalization.CultureInfo.InvariantCulture), "-o", "/dev/null");
        try
        {
            var anomaly = await run.Context.WaitAsync<ProcessAnomaly>(ProcessMonitor.AnomalyTopic, a => a.Check == AnomalyChecks.PtraceAttach && a.Process.Pid == target.Id);
            Assert.Equal(tracer.Id.ToString(System.Globalization.CultureInfo.InvariantCulture), anomaly.Details["tracer_pid"]);
        }
        finally
        {
            Kill(tracer);
            Kill(target);
        }
    }

    [Fact]
    public async Task Refused_connector_falls_back_to_polling_and_says_why()
    {
        await using var run = await MonitorRun.StartAsync(_ => throw new KernelException("PROC_CN_MCAST_LISTEN", 1));
        Assert.Equal("poll", run.Monitor.Source);
        var health = await run.Monitor.HealthAsync(null!, CancellationToken.None);
        Assert.Equal("poll", health.Details["source"]);
        Assert.Contains("PROC_CN_MCAST_LISTEN failed", health.Details["poll_reason"], StringComparison.Ordinal);
    }

    [RootFact]
    public async Task A_forced_overflow_is_counted_and_reconciled_by_a_scan_that_publishes_what_was_missed()
    {
        await using var run = await MonitorRun.StartAsync();
        var source = run.Monitor.Connector!;
        var port = source.Connector.Socket.PortId;

        // Hold the reader first, with the shipped 4 MiB queue (no overflow while it parks: its
        // read in progress ends at the next event), then shrink the queue to the kernel's minimum.
        source.HoldReader();
        for (var round = 0; !source.ReaderHeld; round++)
        {
            Assert.True(round < 100, "the connector's reader never reached its hold");
            Run("/bin/true");
        }

        Assert.Equal(0, source.Connector.Socket.Overruns);
        source.Connector.Socket.SetKernelReceiveBuffer(4096);

        // Now the kernel must overflow it. Once it has (its drop counter in /proc/net/netlink
        // moved) the socket stays congested until it is read, so every event after that is lost,
        // among them the start of the process below.
        for (var round = 0; KernelDrops(port) == 0; round++)
        {
            Assert.True(round < 100, $"the kernel never overflowed procmond's queue (port {port}) in {round} bursts");
            Run("/bin/sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do /bin/true; done");
        }

        using var sleeper = Start("/bin/sleep", "600");
        try
        {
            Assert.Equal(0, source.Connector.Socket.Overruns);
            source.ReleaseReader();

            // The reconciliation scan publishes the process whose events the kernel dropped.
            var started = await run.Context.WaitAsync<ProcessLifecycle>(ProcessMonitor.LifecycleTopic, l => l.Process.Pid == sleeper.Id && l.Kind == ProcessLifecycleKind.Started);
            Assert.Equal("scan", started.Source);
            Assert.EndsWith("/sleep", started.Process.Executable, StringComparison.Ordinal);
            Assert.True(source.Connector.Socket.Overruns >= 1, "the overflow was not counted");
            Assert.True(source.Reconciliations >= 1, "no reconciliation followed the overflow");
            var health = await run.Monitor.HealthAsync(null!, CancellationToken.None);
            Assert.NotEqual("0", health.Details["connector_overruns"]);
            Assert.NotEqual("0", health.Details["reconciliations"]);
            Assert.NotEqual("0", health.Details["reconciled_starts"]);
        }
        finally
        {
            source.ReleaseReader();
            Kill(sleeper);
        }
    }

    /// <summary>The kernel's drop count of the netlink socket with this port id (/proc/net/netlink:
    /// sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode).</summary>
    private static long KernelDrops(uint portId)
    {
        foreach (var line in File.ReadLines("/proc/net/netlink").Skip(1))
        {
            var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f[1] == "11" && uint.Parse(f[2], System.Globalization.CultureInfo.InvariantCulture) == portId)
            {
                return long.Parse(f[8], System.Globalization.CultureInfo.InvariantCulture);
            }
        }

        throw new InvalidOperationException($"no NETLINK_CONNECTOR socket with port id {portId} in /proc/net/netlink");
    }

    private static int Run(string file, params string[] args)
    {
        using var p = Start(file, args);
        var pid = p.Id;
        p.WaitForExit();
        return pid;
    }

    internal static Process Start(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file) { UseShellExecute = false, RedirectStandardError = true };
        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }

        return Process.Start(info)!;
    }

    internal static void Kill(Process p)
    {
        if (!p.HasExited)
        {
            p.Kill();
        }

        p.WaitForExit();
    }

    internal sealed class MonitorRun : IAsyncDisposable
    {
        private readonly CancellationTokenSource _stop = new();

        private MonitorRun(ProcessMonitor monitor, RecordingContext context)
        {
            Monitor_ = monitor;
            Context = context;
        }

        public ProcessMonitor Monitor_ { get; }

        public ProcessMonitor Monitor => Monitor_;

        public RecordingContext Context { get; }

        public static async Task<MonitorRun> StartAsync(OpenProcConnectorFunc? open = null, Action<ProcmondSettings>? settings = null)
        {
            var s = new ProcmondSettings { ScanInterval = TimeSpan.FromHours(1) };
            settings?.Invoke(s);
            var hasher = new ExecutableHasher(s.HashQueueCapacity, s.HashCacheEntries, () => s.HashMaxFileBytes);
            var table = new ProcessTable(new ProcReader(), hasher, new UserDirectory(), s, TimeProvider.System, "procmond-test");
            var context = new RecordingContext();
            var monitor = new ProcessMonitor(context, s, hasher, table, TimeProvider.System, new AnomalyChecks(s, "procmond-test"),
                open is null ? b => ProcConnector.Open(b) : b => open(b), NullLogger<ProcessMonitor>.Instance);
            var run = new MonitorRun(monitor, context);
            await monitor.StartAsync(CancellationToken.None);
            await monitor.Baseline.WaitAsync(Guard);
            return run;
        }

        public async ValueTask DisposeAsync()
        {
            await Monitor_.StopAsync(CancellationToken.None);
            Monitor_.Dispose();
            _stop.Dispose();
        }
    }

    public delegate ProcConnector OpenProcConnectorFunc(int bytes);
}

/// <summary>Records what the monitor publishes, decoded, and lets a test wait for one message.</summary>
internal sealed class RecordingContext : ICollectorContext
{
    private readonly List<(string Topic, IMessage Message)> _published = [];
    private readonly List<(string Topic, Func<IMessage, bool> Match, TaskCompletionSource<IMessage> Done)> _waiters = [];

    public string CollectorId => "procmond-test";

    public TimeSpan Uptime => TimeSpan.Zero;

    public BusClient Client => throw new NotSupportedException("not connected to a bus");

    public CorrelationMetadata? CurrentCall => null;

    public ValueTask PublishAsync(string topic, ReadOnlyMemory<byte> payload, string? contentType = null, CancellationToken cancellationToken = default) => throw new NotSupportedException();

    public ValueTask PublishAsync(string topic, IMessage message, CancellationToken cancellationToken = default)
    {
        lock (_published)
        {
            _published.Add((topic, message));
            foreach (var w in _waiters.Where(w => w.Topic == topic && w.Match(message)).ToList())
            {
                w.Done.TrySetResult(message);
                _waiters.Remove(w);
            }
        }

        return ValueTask.CompletedTask;
    }

    public List<T> Published<T>(string topic)
        where T : IMessage
    {
        lock (_published)
        {
            return _published.Where(p => p.Topic == topic).Select(p => p.Message).OfType<T>().ToList();
        }
    }

    public async Task<T> WaitAsync<T>(string topic, Func<T, bool> match)
        where T : class, IMessage
    {
        var done = new TaskCompletionSource<IMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_published)
        {
            var found = _published.Where(p => p.Topic == topic).Select(p => p.Message).OfType<T>().FirstOrDefault(match);
            if (found is not null)
            {
                return found;
            }

            _waiters.Add((topic, m => m is T t && match(t), done));
        }

        return (T)await done.Task.WaitAsync(TimeSpan.FromSeconds(120));
    }
}
