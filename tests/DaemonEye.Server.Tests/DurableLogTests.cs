using DaemonEye.Configuration;
using DaemonEye.Gateway.Durability;
using DaemonEye.Grains;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace DaemonEye.Server.Tests;

/// <summary>The durable log (src/Gateway/Durability): order, positions, retention, a full disk and a torn WAL.</summary>
public sealed class DurableLogTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("de-durable-").FullName;
    private readonly FakeTimeProvider _time = new(DateTimeOffset.Parse("2026-01-01T00:00:00Z", System.Globalization.CultureInfo.InvariantCulture));

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        Directory.Delete(_directory, recursive: true);
    }

    private DurableLog Open(string? directory = null, long maxBytes = 1L << 30, double maxAgeSeconds = 0) =>
        new(new DurabilityOptions { Directory = directory ?? _directory, MaxBytes = maxBytes, MaxAgeSeconds = maxAgeSeconds }, NullLogger<DurableLog>.Instance, _time);

    private static PublishBatch Batch(string topic, int from, int count)
    {
        var buffer = new byte[count * 8];
        var ends = new int[count];
        for (var i = 0; i < count; i++)
        {
            BitConverter.TryWriteBytes(buffer.AsSpan(i * 8), (long)(from + i));
            ends[i] = (i + 1) * 8;
        }

        return new PublishBatch(topic, buffer, ends, count, 1);
    }

    private static List<LoggedMessage> ReadAll(DurableLog log, ulong after = 0)
    {
        using var reader = log.OpenReader();
        var all = new List<LoggedMessage>();
        while (reader.Read(all.Count == 0 ? after : all[^1].Sequence, 1000, all) > 0)
        {
        }

        return all;
    }

    private static long Value(LoggedMessage m) => BitConverter.ToInt64(m.Publish.Span);

    [Fact]
    public void Appends_are_numbered_in_order_and_numbering_continues_after_a_reopen()
    {
        using (var log = Open())
        {
            Assert.True(log.IsDurable("events.alert.high"));
            Assert.True(log.IsDurable("control.collector.lifecycle"));
            Assert.False(log.IsDurable("events.process.lifecycle"));
            Assert.Equal(1UL, log.Append(Batch("events.alert.a", 0, 3)));
            Assert.Equal(4UL, log.Append(Batch("events.alert.b", 3, 2)));
        }

        using var reopened = Open();
        Assert.Equal(5UL, reopened.LastSequence);
        Assert.Equal(6UL, reopened.Append(Batch("events.alert.a", 5, 1)));
        var all = ReadAll(reopened);
        Assert.Equal([1UL, 2, 3, 4, 5, 6], all.Select(m => m.Sequence));
        Assert.Equal([0L, 1, 2, 3, 4, 5], all.Select(Value));
        Assert.Equal("events.alert.b", all[3].Topic);
    }

    [Fact]
    public void Retained_gives_the_last_messages_of_a_pattern_oldest_first_across_rows_and_topics()
    {
        using var log = Open();
        log.Append(Batch("events.alert.high", 0, 3)); // sequences 1-3
        log.Append(Batch("control.collector.lifecycle", 3, 2)); // 4-5
        log.Append(Batch("events.alert.low", 5, 4)); // 6-9
        log.Append(Batch("control.collector.lifecycle", 9, 1)); // 10

        Assert.Equal([7L, 8], log.Retained("events.alert.#", 2).Select(Value));
        Assert.Equal([1L, 2, 5, 6, 7, 8], log.Retained("events.alert.#", 6).Select(Value));
        Assert.Equal([6UL, 7, 8, 9], log.Retained("events.alert.low", 10).Select(m => m.Sequence));
        Assert.Equal([3L, 4, 9], log.Retained("control.#", 5).Select(Value));
        Assert.Empty(log.Retained("events.alert.none", 3));
    }

    [Fact]
    public void Batches_of_every_size_are_logged_whole_in_order()
    {
        // The log writes a batch as one packed row; read back 1,000 at a time, rows of every size
        // (and reads that end inside a row) come back message for message, numbered without gaps.
        int[] sizes = [1, 3, 4, 5, 15, 16, 17, 63, 64, 65, 84, 100, 127, 128, 130];
        var expected = 0;
        using var log = Open();
        foreach (var size in sizes)
        {
            Assert.Equal((ulong)expected + 1, log.Append(Batch("events.alert.sizes", expected, size)));
            expected += size;
        }

        var all = ReadAll(log);
        Assert.Equal(expected, all.Count);
        for (var i = 0; i < all.Count; i++)
        {
            Assert.Equal((ulong)i + 1, all[i].Sequence);
            Assert.Equal(i, Value(all[i]));
            Assert.Equal("events.alert.sizes", all[i].Topic);
        }

        Assert.Equal(expected * 8, log.Stats().Bytes);
    }

    [Fact]
    public void A_second_log_on_the_same_directory_is_refused_naming_the_directory_until_the_first_is_closed()
    {
        var first = Open();
        var refused = Assert.Throws<InvalidOperationException>(() => Open());
        Assert.Contains($"the durable log directory {_directory} is in use by another daemoneye-agent", refused.Message, StringComparison.Ordinal);
        Assert.Contains("durability.directory", refused.Message, StringComparison.Ordinal);
        first.Dispose();
        using var second = Open();
        Assert.Equal(0UL, second.LastSequence);
    }

    [Fact]
    public void A_consumer_starts_where_asked_once_and_then_resumes_after_its_stored_ack()
    {
        using (var log = Open())
        {
            log.Append(Batch("events.alert.a", 0, 10));
            Assert.Equal(10UL, log.Attach("new", "events.alert.#", ConsumerStart.NewOnly, 0, default, 1, out _));
            Assert.Equal(3UL, log.Attach("seq", "events.alert.#", ConsumerStart.FromSequence, 4, default, 1, out _));
            _time.Advance(TimeSpan.FromMinutes(1));
            var since = _time.GetUtcNow();
            log.Append(Batch("events.alert.a", 10, 5));
            Assert.Equal(10UL, log.Attach("time", "events.alert.#", ConsumerStart.FromTime, 0, since, 1, out _));

            Assert.Null(log.Attach("seq", "events.alert.#", ConsumerStart.NewOnly, 0, default, 2, out var held));
            Assert.Contains("held by connection 1", held, StringComparison.Ordinal);
            Assert.Null(log.Attach("seq", "events.alert.x", ConsumerStart.NewOnly, 0, default, 1, out var other));
            Assert.Contains("exists with pattern 'events.alert.#'", other, StringComparison.Ordinal);

            log.Ack("seq", 12);
            log.Ack("seq", 7); // never back
            log.Detach("seq", 1);
        }

        using var reopened = Open();
        Assert.Equal(12UL, reopened.Attach("seq", "events.alert.#", ConsumerStart.FromSequence, 1, default, 3, out _));
        var seq = Assert.Single(reopened.Consumers(), c => c.Name == "seq");
        Assert.Equal((12UL, 3UL, true), (seq.Acked, seq.Lag, seq.Attached));
    }

    [Fact]
    public void Retention_removes_the_oldest_by_size_and_by_age()
    {
        using var log = Open(maxBytes: 1 << 20, maxAgeSeconds: 3600);
        for (var i = 0; i < 200; i++)
        {
            log.Append(Batch("events.alert.a", i * 100, 100)); // 800 bytes a batch
        }

        Assert.Equal(0, log.EnforceRetention());
        _time.Advance(TimeSpan.FromMinutes(61));
        log.Append(Batch("events.alert.a", 20_000, 1));
        Assert.Equal(20_000, log.EnforceRetention());
        var stats = log.Stats();
        Assert.Equal((20_001UL, 20_001UL, 1L, 8L), (stats.FirstSequence, stats.LastSequence, stats.Messages, stats.Bytes));

        // 2 MiB more than max_bytes allows: the oldest go until the rest fits.
        var big = new PublishBatch("events.alert.big", new byte[64 * 1024], [64 * 1024], 1, 1);
        for (var i = 0; i < 48; i++)
        {
            log.Append(big);
        }

        Assert.True(log.EnforceRetention() > 0);
        stats = log.Stats();
        Assert.InRange(stats.Bytes, (1 << 20) - (64 * 1024), 1 << 20);
        Assert.Equal(stats.LastSequence, ReadAll(log)[^1].Sequence);
        Assert.Equal(stats.FirstSequence, ReadAll(log)[0].Sequence);
    }

    [Fact]
    public void A_full_disk_refuses_and_counts_the_batch_and_keeps_every_earlier_one_intact()
    {
        ulong last;
        using (var log = Open())
        {
            log.Append(Batch("events.alert.a", 0, 10));
            log.LimitPages(16);
            var refused = 0;
            var appended = 10L;
            for (var i = 0; i < 1000 && refused == 0; i++)
            {
                try
                {
                    log.Append(Batch("events.alert.a", (int)appended, 100));
                    appended += 100;
                }
                catch (DurableLogUnavailableException)
                {
                    refused++;
                }
            }

            Assert.Equal(1, refused);
            Assert.Equal(100, log.Refused);
            last = log.LastSequence;
            Assert.Equal((ulong)appended, last);
        }

        using var reopened = Open();
        Assert.Equal(last, reopened.LastSequence);
        Assert.Equal(Enumerable.Range(0, (int)last).Select(i => (long)i), ReadAll(reopened).Select(Value));
        using var check = new SqliteConnection($"Data Source={reopened.Path}");
        check.Open();
        using var integrity = check.CreateCommand();
        integrity.CommandText = "PRAGMA integrity_check";
        Assert.Equal("ok", integrity.ExecuteScalar());
    }

    [Fact]
    public async Task A_refusal_degrades_health_for_five_minutes_and_is_counted_in_metrics()
    {
        using var services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var meters = services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>();
        using var log = Open();
        var observability = new DurableLogObservability(log, meters, _time);
        var observed = new Dictionary<string, long>();
        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == DaemonEye.Gateway.Metrics.MetricNames.DurableMeter)
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, _, _) => observed[instrument.Name] = value);
        listener.Start();

        log.Append(Batch("events.alert.a", 0, 10));
        var healthy = (await observability.CheckAsync(CancellationToken.None));
        Assert.Equal(DaemonEye.Protocol.Ipc.V1.HealthStatus.Healthy, healthy.Status);
        Assert.Contains("10 message(s), 80 bytes, sequences 1..10", healthy.Detail, StringComparison.Ordinal);

        log.LimitPages(16);
        Assert.Throws<DurableLogUnavailableException>(() =>
        {
            for (var i = 0; i < 1000; i++)
            {
                log.Append(Batch("events.alert.a", 10 + (i * 100), 100));
            }
        });
        _time.Advance(TimeSpan.FromSeconds(30));
        var degraded = (await observability.CheckAsync(CancellationToken.None));
        Assert.Equal(DaemonEye.Protocol.Ipc.V1.HealthStatus.Degraded, degraded.Status);
        Assert.Contains("refused a batch 30 s ago", degraded.Detail, StringComparison.Ordinal);
        Assert.Contains("100 refused since start", degraded.Detail, StringComparison.Ordinal);

        _time.Advance(DurableLogObservability.RefusalWindow);
        Assert.Equal(DaemonEye.Protocol.Ipc.V1.HealthStatus.Healthy, (await observability.CheckAsync(CancellationToken.None)).Status);

        listener.RecordObservableInstruments();
        Assert.Equal(100, observed[DaemonEye.Gateway.Metrics.MetricNames.DurableRefused]);
        Assert.Equal(0, observed[DaemonEye.Gateway.Metrics.MetricNames.DurableTornTails]);
        Assert.Equal(log.Stats().Messages, observed[DaemonEye.Gateway.Metrics.MetricNames.DurableMessages]);
        Assert.Equal(log.Stats().Bytes, observed[DaemonEye.Gateway.Metrics.MetricNames.DurableBytes]);
    }

    [Fact]
    public void A_torn_wal_is_detected_counted_and_truncated_and_what_was_whole_is_kept()
    {
        var crashed = Path.Combine(_directory, "crashed");
        Directory.CreateDirectory(crashed);
        using (var log = Open())
        {
            for (var i = 0; i < 20; i++)
            {
                log.Append(Batch("events.alert.a", i * 10, 10));
            }

            // A copy of the files as a crash leaves them: the WAL not yet checkpointed, its last frame cut.
            File.Copy(log.Path, Path.Combine(crashed, DurableLog.FileName));
            File.Copy(log.Path + "-wal", Path.Combine(crashed, DurableLog.FileName + "-wal"));
        }

        var wal = Path.Combine(crashed, DurableLog.FileName + "-wal");
        using (var file = new FileStream(wal, FileMode.Open, FileAccess.Write))
        {
            file.SetLength(file.Length - 100);
        }

        using var recovered = Open(crashed);
        Assert.NotNull(recovered.Torn);
        Assert.Equal(1, recovered.TornTails);
        Assert.Equal(0, new FileInfo(wal).Length);
        var kept = ReadAll(recovered);
        Assert.InRange(kept.Count, 0, 199);
        Assert.Equal(0, kept.Count % 10); // whole batches only
        Assert.Equal(Enumerable.Range(0, kept.Count).Select(i => (long)i), kept.Select(Value));
        Assert.Equal((ulong)kept.Count + 1, recovered.Append(Batch("events.alert.a", 1000, 1)));
    }

    [Fact]
    public void Options_are_validated_together()
    {
        var errors = new DurabilityOptions { Topics = ["events..x"], MaxBytes = 1, Fsync = "sometimes", MaxAckPending = 0, MaxAgeSeconds = -1 }.Validate().ToList();
        Assert.Equal(5, errors.Count);
        Assert.Contains(errors, e => e.StartsWith("durability.fsync is 'sometimes'", StringComparison.Ordinal));
        Assert.Empty(new DurabilityOptions().Validate());
        Assert.Equal(["events.alert.#", "control.collector.lifecycle"], new DurabilityOptions().EffectiveTopics);
    }
}
