using System.Diagnostics;
using System.Threading.Channels;
using DaemonEye.Configuration;
using DaemonEye.Gateway;
using DaemonEye.Gateway.Collectors;
using DaemonEye.Gateway.Rpc;
using DaemonEye.Gateway.Security;
using DaemonEye.Protocol.Collector.V1;
using DaemonEye.Protocol.V1;
using DaemonEye.Supervision;
using Google.Protobuf;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace DaemonEye.Server.Tests;

/// <summary>
/// The supervisor's restart policy (CollectorRunner) on a fake clock, with real child processes and
/// the real collector directory: the restart delay doubles from process_manager.restart_backoff_seconds, the
/// collector is Failed after max_restart_attempts within the window, and a collector that ran longer
/// than restart_window_seconds has its attempt count reset. The delays are read from the timers the
/// runner asks the clock for, and only advancing the fake clock by exactly that much restarts it.
/// </summary>
public sealed class RestartPolicyTests : IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    /// <summary>Long enough that the fake clock never reaches it: only restart delays are timers of interest.</summary>
    private const double StartupTimeoutSeconds = 3600;

    private readonly FakeTimeProvider _fake = new(new DateTimeOffset(2026, 12, 1, 12, 0, 0, TimeSpan.Zero));
    private readonly ProcessLauncher _launcher = new(new SpawnedCollectors(), new CollectorOutputLog(TimeProvider.System), NullLogger<ProcessLauncher>.Instance);
    private readonly RecordingPublisher _publisher = new();
    private readonly List<CollectorRunner> _runners = [];
    private readonly CollectorDirectory _directory;

    public RestartPolicyTests() => _directory = new CollectorDirectory(_fake, TimeSpan.FromSeconds(10));

    public void Dispose()
    {
        foreach (var runner in _runners)
        {
            Signals.Send(runner.Pid, Signals.SigKill); // Pid is 0 (nothing sent) once its process has exited
        }

        _launcher.Dispose();
        _directory.Dispose();
    }

    private (CollectorRunner Runner, TimerRecordingTimeProvider Time) Runner(string program, string[] arguments, ProcessManagerOptions options)
    {
        var time = new TimerRecordingTimeProvider(_fake, ignoreDue: options.StartupTimeout);
        var definition = new CollectorDefinition { Id = $"rp-{Guid.NewGuid():N}"[..16], Executable = program, Arguments = [.. arguments] };
        var context = new SupervisorContext(options, _launcher, new NoCollectorsRpc(), _directory, _publisher, time,
            NullLogger.Instance, new Dictionary<string, string>());
        var runner = new CollectorRunner(definition, context);
        _runners.Add(runner);
        return (runner, time);
    }

    [Fact]
    public async Task Restart_delays_double_from_restart_backoff_seconds_until_max_restart_attempts_then_Failed()
    {
        var options = new ProcessManagerOptions
        {
            RestartBackoffSeconds = 0.5,
            MaxRestartAttempts = 3,
            RestartWindowSeconds = 300,
            StartupTimeoutSeconds = StartupTimeoutSeconds,
        };
        var (runner, time) = Runner("/bin/sh", ["-c", "exit 3"], options);

        var outcome = await runner.StartAsync("test", null, CancellationToken.None).WaitAsync(Patience);
        Assert.Contains("exited during start-up with code 3", outcome, StringComparison.Ordinal);

        // Each restart waits 0.5 s, then 1 s, then 2 s: the runner's timer, and the Stopped event's reason.
        foreach (var (attempt, seconds) in new[] { (1, 0.5), (2, 1.0), (3, 2.0) })
        {
            var delay = await time.NextTimerAsync().WaitAsync(Patience);
            Assert.Equal(TimeSpan.FromSeconds(seconds), delay);
            Assert.Equal(options.BackoffFor(attempt), delay);
            var stopped = await _publisher.NextAsync(e => e.State == "Stopped" && e.Reason.Contains("restart", StringComparison.Ordinal)).WaitAsync(Patience);
            Assert.Contains($"exited with code 3; restart {attempt} of 3 in {seconds:0.###} s", stopped.Reason, StringComparison.Ordinal);
            Assert.Equal((uint)attempt, stopped.RestartCount);

            _fake.Advance(delay);
            var relaunched = await _publisher.NextAsync(e => e.State == "Starting" && e.Pid != 0).WaitAsync(Patience);
            Assert.NotEqual(0u, relaunched.Pid);
        }

        var failed = await _publisher.NextAsync(e => e.State == "Failed").WaitAsync(Patience);
        Assert.Equal(3u, failed.RestartCount);
        Assert.Equal(3, failed.ExitCode);
        Assert.Contains("after 3 restarts within 300 s (process_manager.max_restart_attempts = 3); not restarting it", failed.Reason, StringComparison.Ordinal);
        Assert.Equal(4, _publisher.All.Count(e => e.State == "Starting" && e.Pid != 0));
        Assert.Equal(0, runner.Pid);
    }

    [Fact]
    public async Task A_collector_that_runs_longer_than_restart_window_seconds_has_its_attempt_count_and_backoff_reset()
    {
        var options = new ProcessManagerOptions
        {
            RestartBackoffSeconds = 1,
            MaxRestartAttempts = 2,
            RestartWindowSeconds = 10,
            StartupTimeoutSeconds = StartupTimeoutSeconds,
        };
        var (runner, time) = Runner("/bin/sleep", ["1000"], options);
        var pid = await StartRunningAsync(runner, () => runner.StartAsync("test", null, CancellationToken.None));

        // Two crashes in quick succession use up the attempts: restart 1 after 1 s, restart 2 after 2 s.
        foreach (var (attempt, seconds) in new[] { (1, 1.0), (2, 2.0) })
        {
            Signals.Send(pid, Signals.SigKill);
            var delay = await time.NextTimerAsync().WaitAsync(Patience);
            Assert.Equal(TimeSpan.FromSeconds(seconds), delay);
            var stopped = await _publisher.NextAsync(e => e.State == "Stopped" && e.Reason.Contains("restart", StringComparison.Ordinal)).WaitAsync(Patience);
            Assert.Contains($"was killed by signal 9; restart {attempt} of 2 in {seconds:0.###} s", stopped.Reason, StringComparison.Ordinal);
            pid = await StartRunningAsync(runner, () =>
            {
                _fake.Advance(delay);
                return Task.FromResult(string.Empty);
            });
        }

        // It now runs stably for longer than the window: both earlier failures are forgotten, so the
        // next crash is attempt 1 again, with the first delay, instead of Failed.
        _fake.Advance(TimeSpan.FromSeconds(10.5));
        Signals.Send(pid, Signals.SigKill);

        var reset = await time.NextTimerAsync().WaitAsync(Patience);
        Assert.Equal(TimeSpan.FromSeconds(1), reset);
        var again = await _publisher.NextAsync(e => e.State is "Stopped" or "Failed").WaitAsync(Patience);
        Assert.Equal("Stopped", again.State);
        Assert.Contains("was killed by signal 9; restart 1 of 2 in 1 s", again.Reason, StringComparison.Ordinal);
        Assert.Equal(3u, again.RestartCount); // the total keeps counting; only the window's attempts reset
    }

    [Fact]
    public async Task Without_a_stable_run_the_crash_after_max_restart_attempts_is_Failed()
    {
        var options = new ProcessManagerOptions
        {
            RestartBackoffSeconds = 1,
            MaxRestartAttempts = 1,
            RestartWindowSeconds = 10,
            StartupTimeoutSeconds = StartupTimeoutSeconds,
        };
        var (runner, time) = Runner("/bin/sleep", ["1000"], options);
        var pid = await StartRunningAsync(runner, () => runner.StartAsync("test", null, CancellationToken.None));
        Signals.Send(pid, Signals.SigKill);
        var delay = await time.NextTimerAsync().WaitAsync(Patience);
        pid = await StartRunningAsync(runner, () =>
        {
            _fake.Advance(delay);
            return Task.FromResult(string.Empty);
        });

        // 8 s of running: the first failure, 9 s ago, is still inside the 10 s window.
        _fake.Advance(TimeSpan.FromSeconds(8));
        Signals.Send(pid, Signals.SigKill);

        var failed = await _publisher.NextAsync(e => e.State is "Stopped" or "Failed").WaitAsync(Patience);
        Assert.Equal("Failed", failed.State);
        Assert.Contains("after 1 restarts within 10 s", failed.Reason, StringComparison.Ordinal);
    }

    /// <summary>Runs <paramref name="launch"/>, registers the process it spawns (as the bus would), and returns its pid once Running.</summary>
    private async Task<int> StartRunningAsync(CollectorRunner runner, Func<Task<string>> launch)
    {
        var launched = launch();
        var pid = (int)(await _publisher.NextAsync(e => e.State == "Starting" && e.Pid != 0).WaitAsync(Patience)).Pid;
        runner.OnRegistered(new CollectorPresence(runner.Id, ConnectionId: 1, pid, Uid: 0, []));
        Assert.Equal((uint)pid, (await _publisher.NextAsync(e => e.State == "Running").WaitAsync(Patience)).Pid);
        await launched.WaitAsync(Patience);
        Assert.Equal(pid, runner.Pid);
        using var process = Process.GetProcessById(pid);
        Assert.False(process.HasExited);
        return pid;
    }

    /// <summary>The fake clock, recording the due time of every timer asked for (other than <c>ignoreDue</c>) in order.</summary>
    private sealed class TimerRecordingTimeProvider(FakeTimeProvider fake, TimeSpan ignoreDue) : TimeProvider
    {
        private readonly Channel<TimeSpan> _timers = Channel.CreateUnbounded<TimeSpan>();

        public override DateTimeOffset GetUtcNow() => fake.GetUtcNow();

        public override long GetTimestamp() => fake.GetTimestamp();

        public override long TimestampFrequency => fake.TimestampFrequency;

        public override TimeZoneInfo LocalTimeZone => fake.LocalTimeZone;

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            if (dueTime != ignoreDue)
            {
                _timers.Writer.TryWrite(dueTime);
            }

            return fake.CreateTimer(callback, state, dueTime, period);
        }

        /// <summary>The due time of the next timer created (in creation order).</summary>
        public Task<TimeSpan> NextTimerAsync() => _timers.Reader.ReadAsync().AsTask();
    }

    /// <summary>Lifecycle events as the runner publishes them, read in order: each wait skips (and consumes) the events before its match.</summary>
    private sealed class RecordingPublisher : IBusPublisher
    {
        private readonly List<LifecycleEvent> _all = [];
        private readonly Channel<LifecycleEvent> _unread = Channel.CreateUnbounded<LifecycleEvent>();

        public IReadOnlyList<LifecycleEvent> All
        {
            get
            {
                lock (_all)
                {
                    return [.. _all];
                }
            }
        }

        public async Task<LifecycleEvent> NextAsync(Func<LifecycleEvent, bool> match)
        {
            while (true)
            {
                var e = await _unread.Reader.ReadAsync();
                if (match(e))
                {
                    return e;
                }
            }
        }

        public Task PublishAsync(string topic, ByteString payload, string contentType, CorrelationMetadata correlation, CancellationToken cancellationToken = default)
        {
            Assert.Equal(CollectorRunner.LifecycleTopic, topic);
            var e = LifecycleEvent.Parser.ParseFrom(payload);
            lock (_all)
            {
                _all.Add(e);
            }

            _unread.Writer.TryWrite(e);
            return Task.CompletedTask;
        }
    }

    /// <summary>No collector is on the bus: the runner never makes an RPC in these tests.</summary>
    private sealed class NoCollectorsRpc : IAgentRpc
    {
        public IReadOnlyCollection<string> ConnectedCollectors => [];

        public RpcStatistics Statistics => new(0, 0, 0, 0, 0, 0, 0);

        public CollectorPresence? FindCollector(string collectorId) => null;

        public Task<RpcResponse> CallAsync(string collectorId, RpcOperation operation, ByteString? payload = null, TimeSpan? timeout = null, CorrelationMetadata? parent = null, CancellationToken cancellationToken = default) =>
            throw new InvalidOperationException("the runner made an RPC in a test without collectors on the bus");
    }
}
