using System.Threading.Channels;
using DaemonEye.Configuration;
using DaemonEye.Gateway.Durability;
using DaemonEye.Grains;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace DaemonEye.Server.Tests;

/// <summary>
/// The durable log's writer (src/Gateway/Durability/DurableLog.Append.cs, WalCheckpointer.cs): group
/// commit keeps each batch whole and in queue order and refuses a failed group batch by batch;
/// checkpoints run on their own thread, never in an append, and leave the WAL bounded.
/// </summary>
public sealed class DurableLogWriterTests : IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);
    private readonly string _directory = Directory.CreateTempSubdirectory("de-durable-writer-").FullName;
    private readonly FakeTimeProvider _time = new(DateTimeOffset.Parse("2026-01-01T00:00:00Z", System.Globalization.CultureInfo.InvariantCulture));

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        Directory.Delete(_directory, recursive: true);
    }

    private DurableLog Open(WalCheckpointPolicy? checkpoints = null, string? directory = null) =>
        new(new DurabilityOptions { Directory = directory ?? _directory, MaxBytes = 1L << 30 }, NullLogger<DurableLog>.Instance, _time, checkpoints ?? WalCheckpointPolicy.Default);

    /// <summary>Messages of 8 bytes each holding its value, <paramref name="from"/> on.</summary>
    private static PublishBatch Batch(string topic, long from, int count, int size = 8)
    {
        var buffer = new byte[count * size];
        var ends = new int[count];
        for (var i = 0; i < count; i++)
        {
            BitConverter.TryWriteBytes(buffer.AsSpan(i * size), from + i);
            ends[i] = (i + 1) * size;
        }

        return new PublishBatch(topic, buffer, ends, count, 1);
    }

    private static List<LoggedMessage> ReadAll(DurableLog log)
    {
        using var reader = log.OpenReader();
        var all = new List<LoggedMessage>();
        while (reader.Read(all.Count == 0 ? 0 : all[^1].Sequence, 1000, all) > 0)
        {
        }

        return all;
    }

    private static long Value(LoggedMessage m) => BitConverter.ToInt64(m.Publish.Span);

    [Fact]
    public async Task Appends_queued_behind_a_commit_are_committed_as_one_group_in_queue_order_each_batch_whole()
    {
        using var log = Open();
        Assert.Equal(1UL, log.Append(Batch("events.alert.first", 0, 1)));

        // Four publishers queue 25 batches each (1 to 7 messages) while a commit holds the writer.
        const int Publishers = 4, Batches = 25;
        var queued = new (int Publisher, long From, int Count, Task<ulong> First)[Publishers * Batches];
        using (log.HoldWriter())
        {
            var ready = new Barrier(Publishers);
            var threads = Enumerable.Range(0, Publishers).Select(p => new Thread(() =>
            {
                ready.SignalAndWait();
                for (var b = 0; b < Batches; b++)
                {
                    var from = (p * 1_000_000L) + (b * 10);
                    var count = 1 + ((p + b) % 7);
                    queued[(p * Batches) + b] = (p, from, count, log.AppendAsync(Batch($"events.alert.p{p}", from, count)).AsTask());
                }
            })).ToList();
            threads.ForEach(t => t.Start());
            threads.ForEach(t => t.Join());
            Assert.All(queued, q => Assert.False(q.First.IsCompleted));
        }

        var firstSequences = await Task.WhenAll(queued.Select(q => q.First)).WaitAsync(Patience);
        Assert.Equal((1L, (long)queued.Length), (log.GroupCommits, log.GroupedBatches));

        var all = ReadAll(log);
        var total = queued.Sum(q => q.Count);
        Assert.Equal(total + 1, all.Count);
        Assert.Equal((ulong)total + 1, log.LastSequence);
        for (var q = 0; q < queued.Length; q++)
        {
            // Whole: the batch's messages are consecutive in the log, under its first sequence.
            var (publisher, from, count, _) = queued[q];
            var at = (int)firstSequences[q] - 1;
            Assert.Equal(Enumerable.Range(0, count).Select(i => from + i), all.Skip(at).Take(count).Select(Value));
            Assert.All(all.Skip(at).Take(count), m => Assert.Equal($"events.alert.p{publisher}", m.Topic));
        }

        // In each publisher's order.
        foreach (var mine in Enumerable.Range(0, queued.Length).GroupBy(q => queued[q].Publisher))
        {
            var firsts = mine.Select(q => firstSequences[q]).ToList();
            Assert.Equal(firsts.Order(), firsts);
        }
    }

    [Fact]
    public async Task A_refused_group_refuses_and_counts_each_of_its_batches_and_logs_none_of_them()
    {
        using var log = Open();
        log.Append(Batch("events.alert.a", 0, 10));
        log.LimitPages(16);

        Task<ulong> big, other, small;
        using (log.HoldWriter())
        {
            big = log.AppendAsync(Batch("events.alert.big", 10, 1, size: 64 * 1024)).AsTask();
            other = log.AppendAsync(Batch("events.alert.other", 11, 1, size: 64 * 1024)).AsTask();
            small = log.AppendAsync(Batch("events.alert.small", 12, 5)).AsTask();
        }

        var refusals = new[]
        {
            await Assert.ThrowsAsync<DurableLogUnavailableException>(() => big),
            await Assert.ThrowsAsync<DurableLogUnavailableException>(() => other),
            await Assert.ThrowsAsync<DurableLogUnavailableException>(() => small),
        };
        Assert.Contains("could not take 1 messages on 'events.alert.big', committed together with 2 other batch(es)", refusals[0].Message, StringComparison.Ordinal);
        Assert.Contains("could not take 1 messages on 'events.alert.other'", refusals[1].Message, StringComparison.Ordinal);
        Assert.Contains("could not take 5 messages on 'events.alert.small'", refusals[2].Message, StringComparison.Ordinal);
        Assert.Equal(7, log.Refused);
        Assert.NotNull(log.LastRefusal);
        Assert.Equal(10UL, log.LastSequence);
        Assert.Equal(Enumerable.Range(0, 10).Select(i => (long)i), ReadAll(log).Select(Value));

        // The refused group used no numbers; a batch that fits is taken after it.
        Assert.Equal(11UL, log.Append(Batch("events.alert.a", 10, 2)));
        Assert.Equal(Enumerable.Range(0, 12).Select(i => (long)i), ReadAll(log).Select(Value));
    }

    [Fact]
    public async Task Checkpoints_run_on_their_own_thread_while_appends_go_on_and_an_idle_log_ends_with_an_empty_wal()
    {
        var policy = new WalCheckpointPolicy(Pages: 64, Interval: TimeSpan.FromSeconds(1), BoundFrames: 1_000_000, KeptFrames: 128);
        using var log = Open(policy);
        var wal = log.Path + "-wal";
        using var started = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var checkpointThread = 0;
        var rounds = Channel.CreateUnbounded<WalCheckpoint>();
        log.Checkpointer.RoundFinished = round => rounds.Writer.TryWrite(round);
        log.Checkpointer.RoundStarting = () =>
        {
            checkpointThread = Environment.CurrentManagedThreadId;
            started.Set();
            release.Wait(Patience);
        };

        // Appends past the checkpoint's page count wake the checkpointer, which is held inside its round.
        long value = 0;
        for (var i = 0; i < 10_000 && !started.IsSet; i++, value += 100)
        {
            log.Append(Batch("events.alert.a", value, 100));
        }

        Assert.True(started.Wait(Patience));
        Assert.NotEqual(Environment.CurrentManagedThreadId, checkpointThread);

        // Meanwhile every append commits at once: none waits for a checkpoint, and the WAL grows past the size kept.
        for (var i = 0; i < 300; i++, value += 100)
        {
            Assert.True(log.AppendAsync(Batch("events.alert.a", value, 100)).AsTask().IsCompletedSuccessfully);
        }

        Assert.True(new FileInfo(wal).Length > WalCheckpointer.KeptBytes(policy.KeptFrames, 4096));

        log.Checkpointer.RoundStarting = null;
        release.Set();
        var first = await rounds.Reader.ReadAsync().AsTask().WaitAsync(Patience);
        Assert.Equal(("PASSIVE", 0), (first.Mode, first.Code));
        Assert.True(first.CheckpointedFrames > 0);

        // Idle: each round arms the next; once a round finds nothing new written, the WAL is truncated.
        var last = first;
        for (var i = 0; i < 10 && last.Mode != "TRUNCATE"; i++)
        {
            _time.Advance(policy.Interval);
            last = await rounds.Reader.ReadAsync().AsTask().WaitAsync(Patience);
        }

        Assert.Equal(("TRUNCATE", 0), (last.Mode, last.Code));
        Assert.Equal(0, new FileInfo(wal).Length);
        Assert.Equal(value, ReadAll(log).Count);
        Assert.Equal(Enumerable.Range(0, (int)value).Select(i => (long)i), ReadAll(log).Select(Value));
    }

    [Fact]
    public async Task A_wal_past_its_bound_is_caught_up_and_starts_over_cut_to_the_size_kept_in_whole_frames()
    {
        var policy = new WalCheckpointPolicy(Pages: 64, Interval: TimeSpan.FromSeconds(1), BoundFrames: 200, KeptFrames: 128);
        using var log = Open(policy);
        var wal = log.Path + "-wal";
        var kept = WalCheckpointer.KeptBytes(policy.KeptFrames, 4096);
        using var started = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var rounds = Channel.CreateUnbounded<WalCheckpoint>();
        log.Checkpointer.RoundFinished = round => rounds.Writer.TryWrite(round);
        log.Checkpointer.RoundStarting = () =>
        {
            started.Set();
            release.Wait(Patience);
        };

        // The checkpointer is held while the WAL grows well past the size kept.
        long value = 0;
        while (!started.IsSet || new FileInfo(wal).Length <= 2 * kept)
        {
            log.Append(Batch("events.alert.a", value, 100));
            value += 100;
            Assert.True(value < 10_000_000, "no checkpoint round started");
        }

        // One round copies all of it (past the bound: caught up with the writer held); further rounds are held before they start.
        using var hold = new ManualResetEventSlim();
        log.Checkpointer.RoundStarting = () => hold.Wait(Patience);
        release.Set();
        var round = await rounds.Reader.ReadAsync().AsTask().WaitAsync(Patience);
        Assert.Equal(("CATCH-UP", 0), (round.Mode, round.Code));
        Assert.Equal(round.LogFrames, round.CheckpointedFrames);
        Assert.Equal(1, log.Checkpointer.CatchUps);

        // The next commit starts the WAL over, and cuts the file to the size kept: whole frames, no torn tail.
        log.Append(Batch("events.alert.a", value, 1));
        Assert.Equal(kept, new FileInfo(wal).Length);
        Assert.Null(WalInspection.Inspect(wal));
        hold.Set();
        Assert.Equal(value + 1, ReadAll(log).Count);
    }

    [Fact]
    public void A_write_torn_inside_a_wal_of_whole_frames_is_detected_counted_and_what_was_whole_is_kept()
    {
        // A reused WAL keeps its length, so a torn write need not leave a partial frame at the end:
        // here the last frame is whole in length but not in content (its checksum fails).
        var crashed = Path.Combine(_directory, "crashed");
        Directory.CreateDirectory(crashed);
        using (var log = Open())
        {
            for (var i = 0; i < 20; i++)
            {
                log.Append(Batch("events.alert.a", i * 10, 10));
            }

            File.Copy(log.Path, Path.Combine(crashed, DurableLog.FileName));
            File.Copy(log.Path + "-wal", Path.Combine(crashed, DurableLog.FileName + "-wal"));
        }

        var wal = Path.Combine(crashed, DurableLog.FileName + "-wal");
        Assert.Null(WalInspection.Inspect(wal));
        var length = new FileInfo(wal).Length;
        using (var file = new FileStream(wal, FileMode.Open, FileAccess.ReadWrite))
        {
            file.Position = length - 100;
            var b = (byte)file.ReadByte();
            file.Position = length - 100;
            file.WriteByte((byte)~b);
        }

        var torn = WalInspection.Inspect(wal);
        Assert.NotNull(torn);
        Assert.Equal(0, torn.PartialBytes % torn.FrameSize);

        using var recovered = Open(directory: crashed);
        Assert.Equal(1, recovered.TornTails);
        Assert.Equal(0, new FileInfo(wal).Length);
        var kept = ReadAll(recovered);
        Assert.InRange(kept.Count, 0, 190);
        Assert.Equal(0, kept.Count % 10); // whole batches only
        Assert.Equal(Enumerable.Range(0, kept.Count).Select(i => (long)i), kept.Select(Value));
    }
}
