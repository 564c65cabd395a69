using DaemonEye.Collectors.Procmond;
using DaemonEye.Protocol.Process.V1;
using Google.Protobuf;

namespace DaemonEye.Procmond.Tests;

/// <summary>How a snapshot of a fixture /proc tree is cut into events.process.batch parts.</summary>
public sealed class SnapshotBatchTests
{
    private static ProcessSnapshot Snapshot(FakeProc proc) => new()
    {
        CollectorId = "procmond-test",
        Reason = "startup",
        TakenUnixMs = 123,
        ScanDurationUs = 456,
        Part = 1,
        Parts = 1,
        Processes = { proc.Table.Snapshot() },
    };

    [Fact]
    public async Task A_small_part_limit_splits_the_snapshot_into_numbered_parts_holding_every_process_once()
    {
        using var proc = new FakeProc();
        var exe = proc.Executable("worker", "worker");
        for (var pid = 100; pid < 160; pid++)
        {
            proc.Add(pid, "worker", 1, startTicks: (ulong)(5000 + pid), exe, ["worker", "--id", pid.ToString(System.Globalization.CultureInfo.InvariantCulture), new string('x', 200)]);
        }

        await proc.ScanAsync();
        var snapshot = Snapshot(proc);
        const int limit = 4096;
        Assert.True(snapshot.CalculateSize() > 3 * limit, "the fixture must need several parts");

        var parts = ProcessMonitor.SplitBatch(snapshot, limit);

        Assert.True(parts.Count >= 4, $"{parts.Count} parts");
        Assert.Equal(Enumerable.Range(1, parts.Count).Select(i => (uint)i), parts.Select(p => p.Part));
        Assert.All(parts, p =>
        {
            Assert.Equal((uint)parts.Count, p.Parts);
            Assert.NotEmpty(p.Processes);
            Assert.InRange(p.ToByteArray().Length, 1, limit);
            Assert.Equal(("procmond-test", "startup", 123ul, 456ul), (p.CollectorId, p.Reason, p.TakenUnixMs, p.ScanDurationUs));
        });
        // Every process exactly once, in pid order, whole.
        var all = parts.SelectMany(p => p.Processes).ToList();
        Assert.Equal(Enumerable.Range(100, 60).Select(pid => (uint)pid), all.Select(p => p.Pid));
        Assert.Equal(snapshot.Processes, all);
        Assert.All(all, p => Assert.Equal(4, p.CommandLine.Count));
    }

    [Fact]
    public void A_snapshot_under_the_limit_is_one_part_and_an_oversized_process_gets_a_part_of_its_own()
    {
        var small = new ProcessSnapshot { Reason = "task", Processes = { new ProcessInfo { Pid = 1, Name = "init" }, new ProcessInfo { Pid = 2, Name = "kthreadd" } } };
        var one = Assert.Single(ProcessMonitor.SplitBatch(small, 4096));
        Assert.Equal((1u, 1u, 2), (one.Part, one.Parts, one.Processes.Count));

        var empty = Assert.Single(ProcessMonitor.SplitBatch(new ProcessSnapshot { Reason = "startup" }, 4096));
        Assert.Equal((1u, 1u), (empty.Part, empty.Parts));
        Assert.Empty(empty.Processes);

        var huge = new ProcessInfo { Pid = 7, Name = "huge", CommandLine = { new string('a', 10_000) } };
        var parts = ProcessMonitor.SplitBatch(new ProcessSnapshot { Processes = { small.Processes[0], huge, small.Processes[1] } }, 4096);
        Assert.Equal(["1", "7", "2"], parts.Select(p => string.Join(',', p.Processes.Select(x => x.Pid))));
        Assert.Equal([3u, 3u, 3u], parts.Select(p => p.Parts));
    }
}
