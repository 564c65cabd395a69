using System.Security.Cryptography;
using System.Text;
using DaemonEye.Collectors.Procmond;
using DaemonEye.Collectors.Procmond.Proc;
using DaemonEye.Native.Netlink;
using DaemonEye.Protocol.Process.V1;

namespace DaemonEye.Procmond.Tests;

/// <summary>The scan's events over a fixture /proc tree: real files, symlinks and permissions, a fake clock.</summary>
public sealed class ProcessTableTests
{
    private static string Sha256(string content) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(content)));

    [Fact]
    public async Task The_first_scan_is_a_baseline_with_every_field_and_no_start_events()
    {
        using var proc = new FakeProc();
        var exe = proc.Executable("server", "server v1");
        proc.Add(100, "a) (b c", 1, startTicks: 5000, exe, ["server", "--port", "80"], uid: 1000, utime: 1000, threads: 3, rssPages: 256);
        proc.Add(2, "kthreadd", 0, startTicks: 1, exe: null, uid: 0);

        var changes = await proc.ScanAsync();

        Assert.True(changes.Baseline);
        Assert.Empty(changes.Lifecycle);
        Assert.Equal(2, changes.Processes);
        var p = Assert.Single(proc.Table.Snapshot(), p => p.Pid == 100);
        Assert.Equal(1u, p.Ppid);
        Assert.Equal("a) (b c", p.Name);
        Assert.Equal(exe, p.Executable);
        Assert.Equal(["server", "--port", "80"], p.CommandLine);
        Assert.Equal(1000u, p.Uid);
        Assert.Equal("alice", p.User);
        Assert.Equal((ulong)((FakeProc.BootTime * 1000) + (5000 * 1000 / FakeProc.ClockTicks)), p.StartTimeUnixMs);
        Assert.Equal(3u, p.Threads);
        Assert.Equal((ulong)(256 * Environment.SystemPageSize), p.RssBytes);
        Assert.Equal(Sha256("server v1"), p.ExeSha256);
        Assert.False(p.ExeDeleted);

        // Lifetime average on first sight: 10 s of CPU over (20000 - 50) s.
        Assert.Equal(Math.Round(10.0 / 19_950 * 100, 2), p.CpuPercent);
    }

    [Fact]
    public async Task Starts_exits_and_pid_reuse_are_lifecycle_events()
    {
        using var proc = new FakeProc();
        var exe = proc.Executable("sleep", "sleep");
        proc.Add(100, "old", 1, startTicks: 5000, exe);
        proc.Add(200, "reused", 1, startTicks: 6000, exe);
        await proc.ScanAsync();

        proc.Time.Advance(TimeSpan.FromSeconds(1));
        proc.Add(300, "new", 100, startTicks: 1_999_950, exe, ["new", "arg"]);
        proc.Remove(100);
        proc.SetStat(200, "reborn", 1, startTicks: 1_999_960);
        var changes = await proc.ScanAsync();

        // The reused pid: the old process's exit, then the new one's start.
        Assert.Equal(
            [(ProcessLifecycleKind.Exited, "reused"), (ProcessLifecycleKind.Started, "reborn")],
            changes.Lifecycle.Where(e => e.Process.Pid == 200).Select(e => (e.Kind, e.Process.Name)).ToArray());
        Assert.Equal(
            [(ProcessLifecycleKind.Started, 300u, "new"), (ProcessLifecycleKind.Exited, 100u, "old")],
            changes.Lifecycle.Where(e => e.Process.Pid != 200).Select(e => (e.Kind, e.Process.Pid, e.Process.Name)).Order().ToArray());
        var started = changes.Lifecycle.Single(e => e.Process.Pid == 300);
        Assert.Equal(exe, started.Process.Executable);
        Assert.Equal(["new", "arg"], started.Process.CommandLine);
        Assert.Equal("procmond-test", started.CollectorId);
        Assert.Equal((ulong)proc.Time.GetUtcNow().ToUnixTimeMilliseconds(), started.ObservedUnixMs);
        Assert.Equal(2, proc.Table.Count);
    }

    [Fact]
    public async Task A_pid_that_vanishes_between_listing_and_reading_is_counted_not_reported()
    {
        using var proc = new FakeProc();
        var exe = proc.Executable("sleep", "sleep");
        proc.Add(100, "ok", 1, startTicks: 5000, exe);
        await proc.ScanAsync();

        // Listed (its directory is there) but its stat is gone, as when the process exits mid-scan.
        Directory.CreateDirectory(Path.Combine(proc.Root, "400"));
        proc.Time.Advance(TimeSpan.FromSeconds(1));
        var changes = await proc.ScanAsync();

        Assert.Empty(changes.Lifecycle);
        Assert.Equal(1, proc.Table.Count);
        Assert.Equal(1, proc.Table.Counters.Vanished);
        Assert.Equal(0, proc.Table.Counters.PermissionDenied);
    }

    [Fact]
    public async Task Permission_denied_files_are_counted_and_the_process_still_reported()
    {
        using var proc = new FakeProc();
        var exe = proc.Executable("secret", "secret");
        proc.Add(100, "theirs", 1, startTicks: 5000, exe, uid: 0);
        File.SetUnixFileMode(Path.Combine(proc.Root, "100", "status"), UnixFileMode.None);
        File.SetUnixFileMode(Path.Combine(proc.Root, "100", "cmdline"), UnixFileMode.None);

        // As uid 65534 (a real EACCES even when the test runs as root).
        var changes = FakeProc.AsUser(65534, proc.Table.Scan);

        Assert.Equal(1, changes.Processes);
        Assert.Equal(2, proc.Table.Counters.PermissionDenied);
        Assert.Equal(0, proc.Table.Counters.Vanished);
        var p = Assert.Single(proc.Table.Snapshot());
        Assert.Equal("theirs", p.Name);
        Assert.Equal(exe, p.Executable);
        Assert.Empty(p.CommandLine);
    }

    [Fact]
    public async Task Reparenting_is_a_tree_event()
    {
        using var proc = new FakeProc();
        var exe = proc.Executable("sleep", "sleep");
        proc.Add(100, "child", 50, startTicks: 5000, exe);
        await proc.ScanAsync();

        proc.SetStat(100, "child", 1, startTicks: 5000);
        proc.Time.Advance(TimeSpan.FromSeconds(1));
        var changes = await proc.ScanAsync();

        var e = Assert.Single(changes.Reparented);
        Assert.Equal((100u, 50u, 1u), (e.Pid, e.PreviousPpid, e.Ppid));
        Assert.Empty(changes.Lifecycle);
    }

    [Fact]
    public async Task A_process_being_reaped_reads_ppid_0_which_is_neither_its_parent_nor_a_reparenting()
    {
        using var proc = new FakeProc();
        var exe = proc.Executable("false", "false");
        proc.Add(50, "sh", 1, startTicks: 4000, exe);
        await proc.ScanAsync();
        var changes = new ScanChanges();

        // Forked by 50, then exec'd and exited: by the time the exec is applied its parent has
        // released it, and /proc/<pid>/stat says state X, ppid 0 (the kernel's reaping race).
        proc.Add(300, "false", 50, startTicks: 5000, exe);
        proc.Table.Apply(new ProcEvent(ProcEventKind.Fork, 0, 1_000, 300, 300, 50, 50, 0, 0, null), changes);
        proc.SetStat(300, "false", 0, startTicks: 5000, state: "X");
        proc.Table.Apply(new ProcEvent(ProcEventKind.Exec, 0, 2_000, 300, 300, 0, 0, 0, 0, null), changes);
        proc.Table.Apply(new ProcEvent(ProcEventKind.Exit, 0, 3_000, 300, 300, 50, 50, 1 << 8, 17, null), changes);

        // No fork seen (lost, or before procmond listened): the parent is a named missing field
        // until the exit event names it.
        proc.Add(301, "false", 0, startTicks: 5001, exe);
        proc.SetStat(301, "false", 0, startTicks: 5001, state: "X");
        proc.Table.Apply(new ProcEvent(ProcEventKind.Exec, 0, 4_000, 301, 301, 0, 0, 0, 0, null), changes);
        proc.Table.Apply(new ProcEvent(ProcEventKind.Exit, 0, 5_000, 301, 301, 50, 50, 1 << 8, 17, null), changes);

        Assert.Equal(
            [(ProcessLifecycleKind.Started, 300u, 50u, false), (ProcessLifecycleKind.Exited, 300u, 50u, true),
             (ProcessLifecycleKind.Started, 301u, 0u, false), (ProcessLifecycleKind.Exited, 301u, 50u, true)],
            changes.Lifecycle.Select(l => (l.Kind, l.Process.Pid, l.Process.Ppid, l.ExitStatusKnown && l.ExitCode == 1)).ToArray());
        Assert.DoesNotContain("ppid", changes.Lifecycle[0].Process.MissingFields);
        Assert.Contains("ppid", changes.Lifecycle[2].Process.MissingFields);
        Assert.True(changes.Lifecycle[2].Process.Partial);
        Assert.DoesNotContain("ppid", changes.Lifecycle[3].Process.MissingFields);
        Assert.Equal(2, proc.Table.Events.PartialExecs);

        // A scan that meets a process being reaped reports no reparenting to 0.
        proc.Add(302, "child", 50, startTicks: 5002, exe);
        proc.Time.Advance(TimeSpan.FromSeconds(1));
        await proc.ScanAsync();
        proc.SetStat(302, "child", 0, startTicks: 5002, state: "Z");
        proc.Time.Advance(TimeSpan.FromSeconds(1));
        Assert.Empty((await proc.ScanAsync()).Reparented);
        Assert.Equal(50u, proc.Table.Snapshot().Single(p => p.Pid == 302).Ppid);
    }

    [Fact]
    public async Task Metadata_is_published_only_past_a_threshold()
    {
        using var proc = new FakeProc(new ProcmondSettings { CpuThresholdPercent = 5, RssThresholdPercent = 10, RssThresholdMinBytes = 0, ThreadsThreshold = 4 });
        var exe = proc.Executable("worker", "worker");
        proc.Add(100, "worker", 1, startTicks: 1_999_000, exe, utime: 0, threads: 1, rssPages: 1000);
        await proc.ScanAsync();

        // 1 s later: 3 ticks of CPU (3 %), +5 % RSS, +2 threads: below every threshold.
        proc.Time.Advance(TimeSpan.FromSeconds(1));
        proc.SetStat(100, "worker", 1, startTicks: 1_999_000, utime: 3, threads: 3, rssPages: 1050);
        Assert.Empty((await proc.ScanAsync()).Metadata);

        // Next second: 50 ticks (50 %).
        proc.Time.Advance(TimeSpan.FromSeconds(1));
        proc.SetStat(100, "worker", 1, startTicks: 1_999_000, utime: 53, threads: 3, rssPages: 1050);
        var m = Assert.Single((await proc.ScanAsync()).Metadata);
        Assert.Equal(50.0, m.CpuPercent);
        Assert.Equal(3u, m.Threads);

        // RSS +20 % alone.
        proc.Time.Advance(TimeSpan.FromSeconds(1));
        proc.SetStat(100, "worker", 1, startTicks: 1_999_000, utime: 103, threads: 3, rssPages: 1260);
        m = Assert.Single((await proc.ScanAsync()).Metadata);
        Assert.Equal((ulong)(1260 * Environment.SystemPageSize), m.RssBytes);
    }

    [Fact]
    public async Task A_scan_that_meets_a_forked_child_already_in_its_new_image_announces_it_started()
    {
        using var proc = new FakeProc();
        var shell = proc.Executable("sh", "shell");
        var tool = proc.Executable("true", "true");
        proc.Add(50, "sh", 1, startTicks: 4000, shell);
        await proc.ScanAsync();

        // The connector's fork is applied; its exec is still queued when the scan reads /proc,
        // which already shows the new image (found by bench procmond: such processes had only
        // EXECUTED events, never STARTED).
        var changes = new ScanChanges();
        proc.Add(300, "sh", 50, startTicks: 5000, shell);
        proc.Table.Apply(new ProcEvent(ProcEventKind.Fork, 0, 1_000, 300, 300, 50, 50, 0, 0, null), changes);
        Assert.Empty(changes.Lifecycle);
        proc.SetExeLink(300, tool);
        proc.SetStat(300, "true", 50, startTicks: 5000);
        proc.Time.Advance(TimeSpan.FromSeconds(1));
        var scanned = await proc.ScanAsync();

        var started = Assert.Single(scanned.Lifecycle);
        Assert.Equal(ProcessLifecycleKind.Started, started.Kind);
        Assert.Equal(300u, started.Process.Pid);
        Assert.Equal(tool, started.Process.Executable);

        // An exec of a process already announced stays EXECUTED.
        proc.SetExeLink(300, shell);
        proc.SetStat(300, "sh", 50, startTicks: 5000);
        proc.Time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(ProcessLifecycleKind.Executed, Assert.Single((await proc.ScanAsync()).Lifecycle).Kind);
    }

    [Fact]
    public async Task An_exec_is_a_lifecycle_event_with_the_new_executable()
    {
        using var proc = new FakeProc();
        var shell = proc.Executable("sh", "shell");
        var tool = proc.Executable("tool", "tool");
        proc.Add(100, "sh", 1, startTicks: 5000, shell);
        await proc.ScanAsync();

        proc.SetExeLink(100, tool);
        proc.SetStat(100, "tool", 1, startTicks: 5000);
        File.WriteAllText(Path.Combine(proc.Root, "100", "cmdline"), "tool\0-x\0");
        proc.Time.Advance(TimeSpan.FromSeconds(1));
        var changes = await proc.ScanAsync();

        var e = Assert.Single(changes.Lifecycle);
        Assert.Equal(ProcessLifecycleKind.Executed, e.Kind);
        Assert.Equal(tool, e.Process.Executable);
        Assert.Equal(["tool", "-x"], e.Process.CommandLine);
        Assert.Equal(Sha256("tool"), Assert.Single(proc.Table.Snapshot()).ExeSha256);
    }

    [Fact]
    public async Task A_replaced_executable_is_an_integrity_event_with_both_hashes()
    {
        using var proc = new FakeProc();
        var exe = proc.Executable("daemon", "original");
        proc.Add(100, "daemon", 1, startTicks: 5000, exe);
        await proc.ScanAsync();

        // Replaced on disk: a new file renamed over the path; the kernel's link now ends in " (deleted)".
        var replacement = proc.Executable("daemon.new", "trojan");
        File.Move(replacement, exe, overwrite: true);
        proc.SetExeLink(100, exe + " (deleted)");
        var published = new List<ProcessIntegrity>();
        proc.Hasher.IntegrityReady = (e, _) =>
        {
            published.Add(e);
            return ValueTask.CompletedTask;
        };
        proc.Time.Advance(TimeSpan.FromSeconds(1));
        var changes = await proc.ScanAsync();
        foreach (var (e, original, path, current) in changes.Integrity)
        {
            await proc.Hasher.RequestIntegrityAsync(e, original, path, current, CancellationToken.None);
        }

        await proc.Hasher.DrainAsync(CancellationToken.None);

        var integrity = Assert.Single(published);
        Assert.Equal(IntegrityKind.Replaced, integrity.Kind);
        Assert.Equal(100u, integrity.Pid);
        Assert.Equal(exe, integrity.Executable);
        Assert.Equal(Sha256("original"), integrity.OriginalSha256);
        Assert.Equal(Sha256("trojan"), integrity.CurrentSha256);
        Assert.Empty(changes.Lifecycle);
        Assert.True(Assert.Single(proc.Table.Snapshot()).ExeDeleted);

        // Reported once, not on every scan.
        proc.Time.Advance(TimeSpan.FromSeconds(1));
        Assert.Empty((await proc.ScanAsync()).Integrity);
    }

    [Fact]
    public async Task A_deleted_executable_is_an_integrity_event_without_a_current_hash()
    {
        using var proc = new FakeProc();
        var exe = proc.Executable("dropper", "payload");
        proc.Add(100, "dropper", 1, startTicks: 5000, exe);
        await proc.ScanAsync();

        File.Delete(exe);
        proc.SetExeLink(100, exe + " (deleted)");
        proc.Time.Advance(TimeSpan.FromSeconds(1));
        var (integrity, original, _, current) = Assert.Single((await proc.ScanAsync()).Integrity);

        Assert.Equal(IntegrityKind.Deleted, integrity.Kind);
        Assert.Null(current);
        Assert.NotNull(original);
        Assert.Equal(Sha256("payload"), proc.Hasher.TryGet(original.Value));
    }

    [Fact]
    public async Task One_executable_run_by_many_processes_is_hashed_once()
    {
        using var proc = new FakeProc();
        var exe = proc.Executable("bash", "bash");
        for (var pid = 100; pid < 150; pid++)
        {
            proc.Add(pid, "bash", 1, startTicks: (ulong)(5000 + pid), exe);
        }

        await proc.ScanAsync();

        Assert.Equal(1, proc.Hasher.Computed);
        Assert.All(proc.Table.Snapshot(), p => Assert.Equal(Sha256("bash"), p.ExeSha256));
    }

    [Fact]
    public async Task A_full_hash_queue_is_counted_and_the_next_scan_asks_again()
    {
        using var proc = new FakeProc(new ProcmondSettings { HashQueueCapacity = 1 });
        proc.Add(100, "a", 1, startTicks: 5000, proc.Executable("a", "a"));
        proc.Add(101, "b", 1, startTicks: 5001, proc.Executable("b", "b"));
        proc.Add(102, "c", 1, startTicks: 5002, proc.Executable("c", "c"));

        await proc.ScanAsync();
        Assert.Equal(2, proc.Hasher.QueueFull);
        Assert.Equal(1, proc.Hasher.Computed);

        proc.Time.Advance(TimeSpan.FromSeconds(1));
        await proc.ScanAsync();
        proc.Time.Advance(TimeSpan.FromSeconds(1));
        await proc.ScanAsync();

        Assert.All(proc.Table.Snapshot(), p => Assert.Equal(Sha256(p.Name), p.ExeSha256));
    }

    [Fact]
    public async Task A_name_the_kernel_cut_is_completed_in_events_and_snapshots_and_the_comm_kept()
    {
        using var proc = new FakeProc();
        var exe = proc.Executable("daemoneye-test-target", "target");
        await proc.ScanAsync();

        proc.Time.Advance(TimeSpan.FromSeconds(1));
        proc.Add(100, "daemoneye-test-", 1, startTicks: 1_999_950, exe, [exe]);
        var started = Assert.Single((await proc.ScanAsync()).Lifecycle);

        Assert.Equal(("daemoneye-test-target", "daemoneye-test-"), (started.Process.Name, started.Process.Comm));
        var p = Assert.Single(proc.Table.Snapshot());
        Assert.Equal(("daemoneye-test-target", "daemoneye-test-"), (p.Name, p.Comm));

        // prctl(PR_SET_NAME) to a short name: that is the name now (no event).
        proc.SetStat(100, "worker", 1, startTicks: 1_999_950);
        proc.Time.Advance(TimeSpan.FromSeconds(1));
        Assert.Empty((await proc.ScanAsync()).Lifecycle);
        p = Assert.Single(proc.Table.Snapshot());
        Assert.Equal(("worker", "worker"), (p.Name, p.Comm));
    }

    [Fact]
    public async Task Hashing_waits_for_the_worker_the_scan_only_asks()
    {
        using var proc = new FakeProc();
        proc.Add(100, "a", 1, startTicks: 5000, proc.Executable("a", "a"));
        proc.Add(101, "b", 1, startTicks: 5001, proc.Executable("b", "b"));

        var changes = proc.Table.Scan();

        // Off the scan path: right after the scan nothing is hashed, both files wait in the queue.
        Assert.Equal(2, changes.Processes);
        Assert.Equal((0L, 2), (proc.Hasher.Computed, proc.Hasher.Queued));
        Assert.All(proc.Table.Snapshot(), p => Assert.Empty(p.ExeSha256));

        Assert.Equal(2, await proc.Hasher.DrainAsync(CancellationToken.None));
        Assert.Equal((2L, 0), (proc.Hasher.Computed, proc.Hasher.Queued));
        Assert.All(proc.Table.Snapshot(), p => Assert.Equal(Sha256(p.Name), p.ExeSha256));
    }

    [Fact]
    public async Task An_executable_rewritten_in_place_is_hashed_anew_for_the_process_that_runs_it_next()
    {
        using var proc = new FakeProc();
        var exe = proc.Executable("tool", "version 1");
        proc.Add(100, "tool", 1, startTicks: 5000, exe);
        await proc.ScanAsync();
        Assert.Equal(ReadOutcome.Ok, Stat(exe, out var v1));

        // Same inode, new size: written through the file, not renamed over it.
        await RewriteAsync(exe, "version 2, longer");
        Assert.Equal(ReadOutcome.Ok, Stat(exe, out var v2));
        Assert.Equal((v1.Device, v1.Inode), (v2.Device, v2.Inode));
        Assert.NotEqual(v1.Size, v2.Size);
        proc.Time.Advance(TimeSpan.FromSeconds(1));
        proc.Add(101, "tool", 1, startTicks: 1_999_950, exe);
        Assert.Single(proc.Table.Scan().Lifecycle);
        Assert.Equal(1, proc.Hasher.Computed);
        await proc.Hasher.DrainAsync(CancellationToken.None);

        // Same inode, same size, new mtime.
        await RewriteAsync(exe, "version 3, longer");
        File.SetLastWriteTimeUtc(exe, File.GetLastWriteTimeUtc(exe).AddSeconds(5));
        Assert.Equal(ReadOutcome.Ok, Stat(exe, out var v3));
        Assert.Equal((v2.Inode, v2.Size), (v3.Inode, v3.Size));
        Assert.NotEqual(v2.MtimeNanos, v3.MtimeNanos);
        proc.Time.Advance(TimeSpan.FromSeconds(1));
        proc.Add(102, "tool", 1, startTicks: 2_000_050, exe);
        await proc.ScanAsync();

        // The cache key (device, inode, size, mtime) told the versions apart: three hashes, each
        // process the one of the file it started from.
        Assert.Equal(3, proc.Hasher.Computed);
        var hashes = proc.Table.Snapshot().ToDictionary(p => p.Pid, p => p.ExeSha256);
        Assert.Equal(Sha256("version 1"), hashes[100]);
        Assert.Equal(Sha256("version 2, longer"), hashes[101]);
        Assert.Equal(Sha256("version 3, longer"), hashes[102]);

        static async Task RewriteAsync(string path, string content)
        {
            await using var file = new FileStream(path, FileMode.Open, FileAccess.Write);
            file.SetLength(0);
            await file.WriteAsync(Encoding.UTF8.GetBytes(content));
        }
    }

    private static ReadOutcome Stat(string path, out FileKey key) => ProcReader.StatPath(path, out key);
}
