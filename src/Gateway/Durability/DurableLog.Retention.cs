using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;

namespace DaemonEye.Gateway.Durability;

/// <summary>
/// Retention: the oldest messages go once they pass durability.max_age_seconds or the log passes
/// durability.max_bytes. They go by whole rows (appended batches): by age all of a row's messages
/// share its time; by size the last row removed may take up to one batch more than the excess.
/// </summary>
public sealed partial class DurableLog
{
    private const int RetentionChunk = 10_000; // rows

    /// <summary>Removes what retention no longer keeps; returns how many messages went.</summary>
    public long EnforceRetention()
    {
        long removed = 0;
        if (Options.MaxAge is { } age)
        {
            lock (_gate)
            {
                if (_disposed)
                {
                    return 0;
                }

                using var find = _write.CreateCommand();
                find.CommandText = "SELECT max(seq + count - 1) FROM batches WHERE time < $cutoff";
                find.Parameters.AddWithValue("$cutoff", UnixNanos(_clock.GetUtcNow() - age));
                if (find.ExecuteScalar() is long through)
                {
                    removed += RemoveThrough((ulong)through);
                }
            }
        }

        while (true)
        {
            lock (_gate)
            {
                if (_disposed || _bytes <= Options.MaxBytes)
                {
                    break;
                }

                // The oldest chunk whose removal brings the log under max_bytes (or as far as one chunk goes).
                using var oldest = _write.CreateCommand();
                oldest.CommandText = "SELECT seq + count - 1, length(data) FROM batches ORDER BY seq LIMIT $n";
                oldest.Parameters.AddWithValue("$n", RetentionChunk);
                var excess = _bytes - Options.MaxBytes;
                ulong through = 0;
                using (var rows = oldest.ExecuteReader())
                {
                    while (excess > 0 && rows.Read())
                    {
                        through = (ulong)rows.GetInt64(0);
                        excess -= rows.GetInt64(1);
                    }
                }

                var went = through == 0 ? 0 : RemoveThrough(through);
                if (went == 0)
                {
                    break; // nothing to remove, or SQLite refused (logged): the next round tries again
                }

                removed += went;
            }
        }

        if (removed > 0)
        {
            LogRetention(_logger, removed, _first, _last);
        }

        return removed;
    }

    /// <summary>
    /// Under the gate: removes, in one transaction, every row up to the one ending at <paramref name="through"/>
    /// (the last sequence of a row), and raises the sequence floor to it so that numbering never goes back.
    /// </summary>
    private long RemoveThrough(ulong through)
    {
        try
        {
            using var transaction = _write.BeginTransaction();
            using var measure = _write.CreateCommand();
            measure.Transaction = transaction;
            measure.CommandText = "SELECT coalesce(sum(count), 0), coalesce(sum(length(data)), 0) FROM batches WHERE seq <= $through";
            measure.Parameters.AddWithValue("$through", (long)through);
            long count, bytes;
            using (var row = measure.ExecuteReader())
            {
                row.Read();
                count = row.GetInt64(0);
                bytes = row.GetInt64(1);
            }

            using var delete = _write.CreateCommand();
            delete.Transaction = transaction;
            delete.CommandText = """
                DELETE FROM batches WHERE seq <= $through;
                INSERT INTO state (name, value) VALUES ('sequence_floor', $through) ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value);
                SELECT coalesce(min(seq), 0) FROM batches;
                """;
            delete.Parameters.AddWithValue("$through", (long)through);
            var first = (ulong)(long)delete.ExecuteScalar()!;
            transaction.Commit();
            _checkpointer?.Written(2 + (bytes / 4000));
            _messages -= count;
            _bytes -= bytes;
            _first = first;
            return count;
        }
        catch (SqliteException e)
        {
            LogRetentionFailed(_logger, e.SqliteErrorCode, e.Message);
            return 0;
        }
    }

    [LoggerMessage(EventId = 7004, Level = LogLevel.Information, Message = "Durable log retention removed {Removed} messages; it now holds sequences {First}..{Last}")]
    private static partial void LogRetention(ILogger logger, long removed, ulong first, ulong last);

    [LoggerMessage(EventId = 7005, Level = LogLevel.Warning, Message = "Durable log retention failed: SQLite error {Code}: {Detail}")]
    private static partial void LogRetentionFailed(ILogger logger, int code, string detail);
}
