using BenchmarkDotNet.Attributes;
using DaemonEye.Configuration;
using DaemonEye.Gateway.Durability;
using DaemonEye.Grains;
using FASTER.core;
using Microsoft.Extensions.Logging.Abstractions;

namespace DaemonEye.Benchmarks;

/// <summary>
/// The durable log's store, chosen by these figures (docs/ARCHITECTURE.md, "The durable log"): the
/// agent's own SQLite WAL log against FASTER's FasterLog, appending 64-byte records in batches of
/// 100 (the gateway appends one batch per socket read) and replaying 1,000,000 of them (issue #20's
/// replay goal is a backlog of 1,000,000).
/// Per-operation times are per record (OperationsPerInvoke). Brief by design (the machine is shared):
///   dotnet run -c Release --project bench/DaemonEye.Benchmarks -- --filter '*DurableLog*'
/// </summary>
[MemoryDiagnoser]
[SimpleJob(launchCount: 1, warmupCount: 1, iterationCount: 3, invocationCount: 500)]
public class DurableLogBenchmarks
{
    private const int Batch = 100;
    private const int Publishers = 4;
    private const int SinglesPerPublisher = 10;
    private const int ReplayCount = 1_000_000;
    private readonly byte[] _record = new byte[64];
    private PublishBatch _batch = null!;
    private PublishBatch _single = null!;
    private string _directory = null!;
    private DurableLog _sqlite = null!;
    private DurableLog? _replaySqlite;
    private IDevice _device = null!;
    private FasterLog _faster = null!;
    private IDevice? _replayDevice;
    private FasterLog? _replayFaster;
    private long _batches;

    [Params("checkpoint", "batch")]
    public string Fsync { get; set; } = "checkpoint";

    [GlobalSetup]
    public void Setup()
    {
        _directory = Directory.CreateTempSubdirectory("de-durable-bench-").FullName;
        var buffer = new byte[Batch * _record.Length];
        var ends = Enumerable.Range(1, Batch).Select(i => i * _record.Length).ToArray();
        _batch = new PublishBatch("events.alert.bench", buffer, ends, Batch, 1);
        _single = new PublishBatch("events.alert.bench", _record, [_record.Length], 1, 1);

        _sqlite = OpenSqlite("append");
        (_device, _faster) = OpenFaster("append");
    }

    /// <summary>Also fills the replay logs (<see cref="DurableLogReplayBenchmarks"/>; not the append benchmarks, where with an fsync per batch it would take minutes).</summary>
    public void SetupReplay()
    {
        Setup();
        _replaySqlite = OpenSqlite("replay");
        (_replayDevice, _replayFaster) = OpenFaster("replay");
        for (var i = 0; i < ReplayCount / Batch; i++)
        {
            _replaySqlite.Append(_batch);
            for (var j = 0; j < Batch; j++)
            {
                _replayFaster.Enqueue(_record);
            }
        }

        _replayFaster.Commit(spinWait: true);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _sqlite.Dispose();
        _replaySqlite?.Dispose();
        _faster.Dispose();
        _device.Dispose();
        _replayFaster?.Dispose();
        _replayDevice?.Dispose();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        Directory.Delete(_directory, recursive: true);
    }

    private DurableLog OpenSqlite(string name) =>
        new(new DurabilityOptions { Directory = Path.Combine(_directory, "sqlite-" + name), Fsync = Fsync, MaxBytes = 1L << 40 }, NullLogger<DurableLog>.Instance);

    /// <summary>FasterLog as its documentation sets it up: a local log device, a commit per batch when fsync is "batch".</summary>
    private (IDevice, FasterLog) OpenFaster(string name)
    {
        var device = Devices.CreateLogDevice(Path.Combine(_directory, "faster-" + name, "log"));
        return (device, new FasterLog(new FasterLogSettings { LogDevice = device, LogCommitDir = Path.Combine(_directory, "faster-" + name, "commits") }));
    }

    [Benchmark(OperationsPerInvoke = Batch, Description = "SQLite WAL: append 64 B")]
    public ulong SqliteAppend() => _sqlite.Append(_batch);

    /// <summary>
    /// Four publishers at once, each appending one message at a time (every socket read one publish,
    /// as at a modest rate): appends that find a commit under way are committed together (group commit).
    /// </summary>
    [Benchmark(OperationsPerInvoke = Publishers * SinglesPerPublisher, Description = "SQLite WAL: append 64 B singly, 4 publishers at once")]
    public void SqliteAppendSinglesConcurrently()
    {
        var publishers = new Task[Publishers];
        for (var p = 0; p < Publishers; p++)
        {
            publishers[p] = Task.Run(PublishSinglesAsync);
        }

        Task.WaitAll(publishers);
    }

    [Benchmark(OperationsPerInvoke = Batch, Description = "FasterLog: append 64 B")]
    public long FasterAppend()
    {
        long address = 0;
        for (var i = 0; i < Batch; i++)
        {
            address = _faster.Enqueue(_record);
        }

        // "batch": commit (flush and persist the tail) every batch; "checkpoint": every 100th, as SQLite checkpoints now and then.
        if (Fsync == "batch" || ++_batches % 100 == 0)
        {
            _faster.Commit(spinWait: true);
        }

        return address;
    }

    private async Task PublishSinglesAsync()
    {
        for (var i = 0; i < SinglesPerPublisher; i++)
        {
            await _sqlite.AppendAsync(_single);
        }
    }

    /// <summary>Reads the replay log through (used by <see cref="DurableLogReplayBenchmarks"/>).</summary>
    public int SqliteReplay()
    {
        using var reader = _replaySqlite!.OpenReader();
        var rows = new List<LoggedMessage>(512);
        ulong after = 0;
        var total = 0;
        while (reader.Read(after, 512, rows) is var n and > 0)
        {
            total += n;
            after = rows[^1].Sequence;
            rows.Clear();
        }

        return total;
    }

    /// <summary>
    /// Replays the log to a durable consumer as the bus does: a <see cref="DurableSubscription"/> (the
    /// pump, its window of durability.max_ack_pending = 10,000 and half of the 64 MiB outbound limit)
    /// writes Deliver frames; the "connection" takes each read's frames and acknowledges them at once.
    /// </summary>
    public int SubscriptionReplay()
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        DurableSubscription? subscription = null;
        var delivered = 0;
        ulong last = 0;
        subscription = new DurableSubscription(_replaySqlite!, "bench", "events.alert.#", 1, acked: 0, maxAckPending: 10_000, maxUnackedBytes: 32L << 20,
            send: (frames, count) =>
            {
                delivered += count;
                last += (ulong)count; // one topic, every message matches: sequences 1.. without gaps
                if (delivered == ReplayCount)
                {
                    done.TrySetResult();
                }

                subscription!.Acknowledge(last);
            },
            failed: e => done.TrySetException(e));
        subscription.Start();
        done.Task.GetAwaiter().GetResult();
        subscription.StopAsync().GetAwaiter().GetResult();
        return delivered;
    }

    /// <summary>Scans the replay FasterLog through.</summary>
    public int FasterReplay()
    {
        using var iterator = _replayFaster!.Scan(_replayFaster.BeginAddress, _replayFaster.TailAddress);
        var total = 0;
        while (iterator.GetNext(out var entry, out _, out _))
        {
            total += entry.Length > 0 ? 1 : 0;
        }

        return total;
    }
}

/// <summary>Replay of 1,000,000 logged 64-byte records, one replay per iteration (see <see cref="DurableLogBenchmarks"/>).</summary>
[SimpleJob(BenchmarkDotNet.Engines.RunStrategy.Monitoring, launchCount: 1, warmupCount: 1, iterationCount: 3)]
public class DurableLogReplayBenchmarks
{
    private const int ReplayCount = 1_000_000;
    private readonly DurableLogBenchmarks _logs = new() { Fsync = "checkpoint" };

    [GlobalSetup]
    public void Setup() => _logs.SetupReplay();

    [GlobalCleanup]
    public void Cleanup() => _logs.Cleanup();

    [Benchmark(OperationsPerInvoke = ReplayCount, Description = "SQLite WAL: replay 1M")]
    public int SqliteReplay() => _logs.SqliteReplay();

    [Benchmark(OperationsPerInvoke = ReplayCount, Description = "SQLite WAL: replay 1M to a durable subscription (Deliver frames)")]
    public int SubscriptionReplay() => _logs.SubscriptionReplay();

    [Benchmark(OperationsPerInvoke = ReplayCount, Description = "FasterLog: replay 1M")]
    public int FasterReplay() => _logs.FasterReplay();
}
