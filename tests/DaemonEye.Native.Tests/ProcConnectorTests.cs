using System.Buffers.Binary;
using System.Diagnostics;
using DaemonEye.Native.Netlink;

namespace DaemonEye.Native.Tests;

/// <summary>The proc connector against the real kernel, with real child processes (root only).</summary>
public sealed class ProcConnectorTests
{
    /// <summary>A guard against a broken test hanging the run; never part of what is measured.</summary>
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(60);

    [RootFact]
    public void A_short_lived_child_is_seen_forked_execed_and_exited_with_its_status()
    {
        using var connector = ProcConnector.Open(4 << 20);
        using var child = Start("/bin/sh", "-c", "exit 7");
        var pid = child.Id;
        var seen = Collect(connector, e => e.Kind == ProcEventKind.Exit && e.Pid == pid);
        child.WaitForExit();

        var fork = Assert.Single(seen, e => e.Kind == ProcEventKind.Fork && e.Pid == pid);
        Assert.Equal(pid, fork.Tgid);
        Assert.Equal(Environment.ProcessId, fork.ParentTgid);
        Assert.Contains(seen, e => e.Kind == ProcEventKind.Exec && e.Pid == pid && e.Tgid == pid);
        var exit = seen[^1];
        Assert.True(exit.Exited);
        Assert.Equal(7, exit.ExitStatus);
        Assert.Equal(0, exit.TerminatingSignal);
        Assert.Equal(17u, exit.ExitSignal); // SIGCHLD to the parent
        Assert.True(exit.TimestampNs > fork.TimestampNs);
        Assert.Equal(0, connector.Malformed);
    }

    [RootFact]
    public void A_killed_child_exits_with_the_signal()
    {
        using var connector = ProcConnector.Open(4 << 20);
        using var child = Start("/bin/sleep", "600");
        var pid = child.Id;
        try
        {
            Collect(connector, e => e.Kind == ProcEventKind.Exec && e.Pid == pid);
            child.Kill();
            var exit = Collect(connector, e => e.Kind == ProcEventKind.Exit && e.Pid == pid)[^1];
            Assert.False(exit.Exited);
            Assert.Equal(9, exit.TerminatingSignal);
        }
        finally
        {
            Kill(child);
        }
    }

    [RootFact]
    public void Uid_changes_and_ptrace_attach_are_reported()
    {
        using var connector = ProcConnector.Open(4 << 20);
        using var child = Start("/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/bin/true");
        var pid = child.Id;
        var seen = Collect(connector, e => e.Kind == ProcEventKind.Exit && e.Pid == pid);
        var uid = Assert.Single(seen, e => e.Kind == ProcEventKind.Uid && e.Tgid == pid);
        Assert.Equal(65534u, uid.Real);
        Assert.Equal(65534u, uid.Effective);
        Assert.Contains(seen, e => e.Kind == ProcEventKind.Gid && e.Tgid == pid && e.Real == 65534u);

        using var target = Start("/bin/sleep", "600");
        try
        {
            Collect(connector, e => e.Kind == ProcEventKind.Exec && e.Pid == target.Id);
            using var tracer = Start("/usr/bin/strace", "-p", target.Id.ToString(System.Globalization.CultureInfo.InvariantCulture), "-o", "/dev/null");
            try
            {
                var attach = Collect(connector, e => e.Kind == ProcEventKind.Ptrace && e.Pid == target.Id && e.TracerPid != 0)[^1];
                Assert.Equal(tracer.Id, attach.TracerTgid);
            }
            finally
            {
                Kill(tracer);
            }
        }
        finally
        {
            Kill(target);
        }
    }

    [RootFact]
    public void Events_lost_to_a_full_queue_are_counted_from_the_sequence_gaps()
    {
        using var connector = ProcConnector.Open(1);
        for (var i = 0; i < 40; i++)
        {
            using var child = Start("/bin/true");
            child.WaitForExit();
        }

        // Room from now on, before draining: a drop between the drain and a later resize would report
        // a second overrun to the reads below. The overruns already pending are reported by the drain.
        connector.Socket.SetKernelReceiveBuffer(4 << 20);
        var events = new List<ProcEvent>();
        var overruns = 0;
        while (connector.TryRead(events) is var status && status != NetlinkReceiveStatus.Empty)
        {
            overruns += status == NetlinkReceiveStatus.Overrun ? 1 : 0;
        }

        Assert.True(overruns >= 1);
        Assert.Equal(overruns, connector.Socket.Overruns);

        // The next event on a CPU whose events were dropped shows how far its numbering jumped. Which
        // CPU an event is numbered on is the scheduler's choice, so spawn until one lands on such a CPU
        // (bounded: the count must move within 200 children).
        var spawned = 0;
        while (connector.Lost == 0 && spawned < 200)
        {
            using var child = Start("/bin/true");
            Collect(connector, e => e.Kind == ProcEventKind.Exit && e.Pid == child.Id);
            child.WaitForExit();
            spawned++;
        }

        Assert.True(connector.Lost > 0, $"{events.Count} events read before the overrun, {spawned} children after it, none counted lost");
    }

    [Fact]
    public void Short_or_foreign_messages_do_not_decode()
    {
        var payload = new byte[20 + 16 + 24];
        BinaryPrimitives.WriteUInt32LittleEndian(payload, 1);
        BinaryPrimitives.WriteUInt32LittleEndian(payload.AsSpan(4), 1);
        BinaryPrimitives.WriteUInt16LittleEndian(payload.AsSpan(16), 16 + 24);
        BinaryPrimitives.WriteUInt32LittleEndian(payload.AsSpan(20), 0x80000000);
        BinaryPrimitives.WriteInt32LittleEndian(payload.AsSpan(36), 42);
        BinaryPrimitives.WriteInt32LittleEndian(payload.AsSpan(40), 42);
        BinaryPrimitives.WriteUInt32LittleEndian(payload.AsSpan(44), 0x0300); // exit(3)
        Assert.True(ProcConnector.TryDecode(payload, out var exit, out _));
        Assert.Equal(ProcEventKind.Exit, exit.Kind);
        Assert.Equal(3, exit.ExitStatus);

        Assert.False(ProcConnector.TryDecode(payload.AsSpan(0, 20 + 16 + 8), out _, out _)); // exit needs 24 bytes
        BinaryPrimitives.WriteUInt32LittleEndian(payload, 2); // another connector index
        Assert.False(ProcConnector.TryDecode(payload, out _, out _));
        BinaryPrimitives.WriteUInt32LittleEndian(payload, 1);
        BinaryPrimitives.WriteUInt32LittleEndian(payload.AsSpan(20), 0x1234); // unknown kind
        Assert.False(ProcConnector.TryDecode(payload, out _, out _));
    }

    /// <summary>Reads events until <paramref name="last"/> matches; returns them all, the match last.</summary>
    private static List<ProcEvent> Collect(ProcConnector connector, Func<ProcEvent, bool> last)
    {
        using var guard = new CancellationTokenSource(Guard);
        var all = new List<ProcEvent>();
        var batch = new List<ProcEvent>();
        while (true)
        {
            batch.Clear();
            Assert.Equal(NetlinkReceiveStatus.Messages, connector.Read(batch, guard.Token));
            foreach (var e in batch)
            {
                all.Add(e);
                if (last(e))
                {
                    return all;
                }
            }
        }
    }

    private static Process Start(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file) { UseShellExecute = false, RedirectStandardError = true };
        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }

        return Process.Start(info)!;
    }

    private static void Kill(Process process)
    {
        if (!process.HasExited)
        {
            process.Kill();
        }

        process.WaitForExit();
    }
}
