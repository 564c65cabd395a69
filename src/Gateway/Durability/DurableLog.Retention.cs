using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;

namespace DaemonEye.Gateway.Durability;

/// <summary>Retention: the oldest messages go once they pass durability.max_age_seconds or the log passes durability.max_bytes.</summary>
public sealed partial class DurableLog
{
    private const int RetentionChunk = 10_000;

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
                find.CommandText = "SELECT max(seq) FROM messages WHERE time < $cutoff";
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
                oldest.CommandText = "SELECT seq, length(publish) FROM messages ORDER BY seq LIMIT $n";
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

                if (through == 0)
                {
                    break;
                }

                removed += RemoveThrough(through);
            }
        }

        if (removed > 0)
        {
            LogRetention(_logger, removed, _first, _last);
        }

        return removed;
    }

    /// <summary>Under the gate: removes every message up to <paramref name="through"/> in one transaction.</summary>
    private long RemoveThrough(ulong through)
    {
        try
        {
            using var transaction = _write.BeginTransaction();
            using var measure = _write.CreateCommand();
            measure.Transaction = transaction;
            measure.CommandText = "SELECT count(*), coalesce(sum(length(publish)), 0) FROM messages WHERE seq <= $through";
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
            delete.CommandText = "DELETE FROM messages WHERE seq <= $through";
            delete.Parameters.AddWithValue("$through", (long)through);
            delete.ExecuteNonQuery();
            transaction.Commit();
            _messages -= count;
            _bytes -= bytes;
            _first = _messages == 0 ? 0 : through + 1;
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
