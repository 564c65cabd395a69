using DaemonEye.Configuration;
using DaemonEye.Gateway.Durability;
using DaemonEye.Grains;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace DaemonEye.Server.Tests;

/// <summary>
/// The durable log's packed format (one row per appended batch, DurableLog.Schema.cs): positions
/// inside a row, retention by whole rows with exact byte accounting, numbering across an emptied
/// log, and the migration of a log of the first (one row per message) format.
/// </summary>
public sealed class DurableLogFormatTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("de-durable-format-").FullName;
    private readonly FakeTimeProvider _time = new(DateTimeOffset.Parse("2026-01-01T00:00:00Z", System.Globalization.CultureInfo.InvariantCulture));

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        Directory.Delete(_directory, recursive: true);
    }

    private DurableLog Open(long maxBytes = 1L << 30, double maxAgeSeconds = 0) =>
        new(new DurabilityOptions { Directory = _directory, MaxBytes = maxBytes, MaxAgeSeconds = maxAgeSeconds }, NullLogger<DurableLog>.Instance, _time);

    /// <summary>Messages <paramref name="from"/> .. + <paramref name="count"/>, each its index as 8 bytes then <paramref name="extra"/> more.</summary>
    private static PublishBatch Batch(string topic, int from, int count, int extra = 0)
    {
        var size = 8 + extra;
        var buffer = new byte[count * size];
        var ends = new int[count];
        for (var i = 0; i < count; i++)
        {
            BitConverter.TryWriteBytes(buffer.AsSpan(i * size), (long)(from + i));
            ends[i] = (i + 1) * size;
        }

        return new PublishBatch(topic, buffer, ends, count, 1);
    }

    private static long Value(LoggedMessage m) => BitConverter.ToInt64(m.Publish.Span);

    /// <summary>Every message after <paramref name="after"/>, read <paramref name="step"/> at a time on one reader.</summary>
    private static List<LoggedMessage> ReadAll(DurableLog log, ulong after = 0, int step = 1000)
    {
        using var reader = log.OpenReader();
        var all = new List<LoggedMessage>();
        while (reader.Read(all.Count == 0 ? after : all[^1].Sequence, step, all) > 0)
        {
        }

        return all;
    }

    [Fact]
    public void Reads_start_anywhere_inside_a_row_and_continue_across_rows_in_any_step()
    {
        using var log = Open();
        int[] sizes = [1, 3, 100, 7, 64, 1, 2];
        var total = 0;
        foreach (var size in sizes)
        {
            log.Append(Batch("events.alert.rows", total, size));
            total += size;
        }

        foreach (var step in new[] { 1, 2, 5, 7, 99, 100, 101, 512 })
        {
            foreach (var after in new ulong[] { 0, 1, 3, 4, 37, 103, 104, 110, 176, 177, 178 })
            {
                var read = ReadAll(log, after, step);
                Assert.Equal(Enumerable.Range((int)after + 1, total - (int)after).Select(i => (ulong)i), read.Select(m => m.Sequence));
                Assert.Equal(read.Select(m => (long)m.Sequence - 1), read.Select(Value));
            }
        }

        // One reader jumping back and forth: each read is served from where it is asked.
        using var jumping = log.OpenReader();
        foreach (var (after, expected) in new (ulong After, ulong[] Expected)[] { (50, [51, 52, 53]), (2, [3, 4, 5]), (52, [53, 54, 55]), (177, [178]), (178, []) })
        {
            var some = new List<LoggedMessage>();
            jumping.Read(after, 3, some);
            Assert.Equal(expected, some.Select(m => m.Sequence));
        }
    }

    [Fact]
    public void A_consumer_starts_and_resumes_in_the_middle_of_a_row_and_its_lag_counts_the_rest_of_that_row()
    {
        using (var log = Open())
        {
            log.Append(Batch("events.alert.a", 0, 100)); // 1..100
            log.Append(Batch("events.alert.a", 100, 50)); // 101..150
            Assert.Equal(41UL, log.Attach("mid", "events.alert.#", ConsumerStart.FromSequence, 42, default, 1, out _));
            Assert.Equal(109UL, Assert.Single(log.Consumers()).Lag);
            log.Ack("mid", 120);
            Assert.Equal(30UL, Assert.Single(log.Consumers()).Lag);
        }

        using var reopened = Open();
        var acked = reopened.Attach("mid", "events.alert.#", ConsumerStart.NewOnly, 0, default, 2, out _);
        Assert.Equal(120UL, acked);
        var rest = ReadAll(reopened, acked!.Value, step: 7);
        Assert.Equal(Enumerable.Range(121, 30).Select(i => (ulong)i), rest.Select(m => m.Sequence));
        Assert.Equal(Enumerable.Range(120, 30).Select(i => (long)i), rest.Select(Value));
    }

    [Fact]
    public async Task A_durable_subscription_resumed_inside_a_row_delivers_exactly_the_rest_in_order()
    {
        using var log = Open();
        log.Append(Batch("events.alert.a", 0, 100));
        log.Append(Batch("events.other.x", 100, 10)); // logged by the test directly; the consumer's pattern skips it
        log.Append(Batch("events.alert.b", 110, 40));
        var delivered = new List<ulong>();
        var all = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        DurableSubscription? subscription = null;
        var ids = new List<uint>();

        // A window of 16: the pump goes on only as the cumulative acks (sent here as each read's frames arrive) free it.
        subscription = new DurableSubscription(log, "mid", "events.alert.#", 7, acked: 63, maxAckPending: 16, maxUnackedBytes: 1 << 20,
            send: (frames, count) =>
            {
                var span = frames.AsSpan();
                while (span.Length > 0)
                {
                    var length = (int)System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(span);
                    var frame = span.Slice(DaemonEye.Protocol.Framing.HeaderSize, length);
                    Assert.Equal(DaemonEye.Protocol.Wire.DeliverDecode.Deliver, DaemonEye.Protocol.Wire.DeliverFrame.TryDecode(frame, ids, out var sequence, out _, out _));
                    delivered.Add(sequence);
                    span = span[(DaemonEye.Protocol.Framing.HeaderSize + length)..];
                }

                if (delivered.Count == 77)
                {
                    all.TrySetResult();
                }

                subscription!.Acknowledge(delivered[^1]);
            },
            failed: e => all.TrySetException(e));
        subscription.Start();
        await all.Task.WaitAsync(TimeSpan.FromSeconds(30));
        await subscription.StopAsync();
        Assert.Equal(Enumerable.Range(64, 37).Concat(Enumerable.Range(111, 40)).Select(i => (ulong)i), delivered);
    }

    [Fact]
    public void Retention_removes_whole_rows_keeps_exact_bytes_and_numbering_continues_after_the_log_is_emptied()
    {
        using (var log = Open(maxBytes: 10_000, maxAgeSeconds: 3600))
        {
            log.Append(Batch("events.alert.a", 0, 50, extra: 24)); // 1..50, 1,600 bytes
            _time.Advance(TimeSpan.FromMinutes(30));
            log.Append(Batch("events.alert.a", 50, 50, extra: 24)); // 51..100
            log.Append(Batch("events.alert.a", 100, 1, extra: 24)); // 101
            Assert.Equal(0, log.EnforceRetention());
            Assert.Equal(3232L, log.Stats().Bytes);

            // By age: the first row is past an hour, the others not.
            _time.Advance(TimeSpan.FromMinutes(31));
            Assert.Equal(50, log.EnforceRetention());
            var stats = log.Stats();
            Assert.Equal((51UL, 101UL, 51L, 1632L), (stats.FirstSequence, stats.LastSequence, stats.Messages, stats.Bytes));
            Assert.Equal(51UL, ReadAll(log)[0].Sequence);

            // By size: 300 more messages in rows of 100 (3,200 bytes each) put the log at 11,232 > 10,000;
            // the oldest whole row goes (51..100, 1,600 bytes), which is enough: 9,632 remain.
            for (var i = 0; i < 3; i++)
            {
                log.Append(Batch("events.alert.b", 101 + (i * 100), 100, extra: 24));
            }

            Assert.Equal(50, log.EnforceRetention());
            stats = log.Stats();
            Assert.Equal((101UL, 401UL, 301L, 9632L), (stats.FirstSequence, stats.LastSequence, stats.Messages, stats.Bytes));
            var kept = ReadAll(log, step: 64);
            Assert.Equal(stats.Bytes, kept.Sum(m => (long)m.Publish.Length));
            Assert.Equal(Enumerable.Range(101, 301).Select(i => (ulong)i), kept.Select(m => m.Sequence));
            Assert.Equal(kept.Select(m => (long)m.Sequence - 1), kept.Select(Value));

            // Everything ages out: the log is empty, and the sequence does not go back, not even after a reopen.
            _time.Advance(TimeSpan.FromHours(2));
            Assert.Equal(301, log.EnforceRetention());
            Assert.Equal((0UL, 401UL, 0L, 0L), (log.Stats().FirstSequence, log.Stats().LastSequence, log.Stats().Messages, log.Stats().Bytes));
        }

        using var reopened = Open();
        Assert.Equal(401UL, reopened.LastSequence);
        Assert.Equal(402UL, reopened.Append(Batch("events.alert.a", 401, 2)));
        Assert.Equal([402UL, 403], ReadAll(reopened).Select(m => m.Sequence));
    }

    [Fact]
    public void A_log_of_the_one_row_per_message_format_is_migrated_with_its_messages_times_and_consumers()
    {
        var path = Path.Combine(_directory, DurableLog.FileName);
        var start = DurableLog.UnixNanos(_time.GetUtcNow());
        using (var old = new SqliteConnection($"Data Source={path};Pooling=False"))
        {
            old.Open();
            using var create = old.CreateCommand();

            // The first format as its agent created it; messages 1..3 already removed by retention (the counter kept 12).
            create.CommandText = """
                PRAGMA journal_mode = WAL;
                CREATE TABLE messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL, topic TEXT NOT NULL, publish BLOB NOT NULL);
                CREATE INDEX messages_time ON messages (time);
                CREATE TABLE consumers (name TEXT PRIMARY KEY, pattern TEXT NOT NULL, acked INTEGER NOT NULL, created INTEGER NOT NULL);
                INSERT INTO consumers VALUES ('siem', 'events.alert.#', 5, 0);
                """;
            create.ExecuteNonQuery();
            using var insert = old.CreateCommand();
            insert.CommandText = "INSERT INTO messages (seq, time, topic, publish) VALUES ($seq, $time, $topic, $publish)";
            for (var seq = 1; seq <= 12; seq++)
            {
                insert.Parameters.Clear();
                insert.Parameters.AddWithValue("$seq", seq);
                insert.Parameters.AddWithValue("$time", start + (seq <= 7 ? 0 : 60_000_000_000L)); // 8.. a minute later
                insert.Parameters.AddWithValue("$topic", seq is 5 or 6 ? "events.alert.b" : "events.alert.a");
                insert.Parameters.AddWithValue("$publish", BitConverter.GetBytes((long)seq * 10));
                insert.ExecuteNonQuery();
            }

            using var retention = old.CreateCommand();
            retention.CommandText = "DELETE FROM messages WHERE seq <= 3 OR seq >= 11";
            retention.ExecuteNonQuery();
        }

        using (var log = Open())
        {
            Assert.Equal(12UL, log.LastSequence);
            var stats = log.Stats();
            Assert.Equal((4UL, 7L, 56L), (stats.FirstSequence, stats.Messages, stats.Bytes));
            var all = ReadAll(log);
            Assert.Equal([4UL, 5, 6, 7, 8, 9, 10], all.Select(m => m.Sequence));
            Assert.Equal([40L, 50, 60, 70, 80, 90, 100], all.Select(Value));
            Assert.Equal(["events.alert.a", "events.alert.b", "events.alert.b", "events.alert.a", "events.alert.a", "events.alert.a", "events.alert.a"], all.Select(m => m.Topic));
            Assert.Equal(5UL, log.Attach("siem", "events.alert.#", ConsumerStart.NewOnly, 0, default, 1, out _));
            Assert.Equal(7UL, log.Attach("later", "events.alert.#", ConsumerStart.FromTime, 0, _time.GetUtcNow().AddSeconds(30), 1, out _));
            Assert.Equal(13UL, log.Append(Batch("events.alert.a", 13, 1)));
        }

        using (var check = new SqliteConnection($"Data Source={path};Pooling=False"))
        {
            check.Open();
            using var tables = check.CreateCommand();
            tables.CommandText = "SELECT (SELECT count(*) FROM sqlite_master WHERE name = 'messages'), (SELECT count(*) FROM batches), (SELECT user_version FROM pragma_user_version)";
            using var row = tables.ExecuteReader();
            row.Read();

            // 4 | 5 6 | 7 (topic), 8 9 10 (time), 13: five rows.
            Assert.Equal((0L, 5L, 2L), (row.GetInt64(0), row.GetInt64(1), row.GetInt64(2)));
        }
    }

    [Fact]
    public void A_log_of_a_newer_format_is_refused_saying_what_to_do()
    {
        using (var log = Open())
        {
            log.Append(Batch("events.alert.a", 0, 1));
        }

        using (var newer = new SqliteConnection($"Data Source={Path.Combine(_directory, DurableLog.FileName)};Pooling=False"))
        {
            newer.Open();
            using var bump = newer.CreateCommand();
            bump.CommandText = "PRAGMA user_version = 3";
            bump.ExecuteNonQuery();
        }

        var refused = Assert.Throws<InvalidOperationException>(() => Open());
        Assert.Contains("has format version 3, which this daemoneye-agent (format 2) cannot read", refused.Message, StringComparison.Ordinal);
        Assert.Contains($"move {_directory} aside", refused.Message, StringComparison.Ordinal);
    }
}
