using Microsoft.Data.Sqlite;

namespace DaemonEye.Gateway.Durability;

/// <summary>Where a durable consumer that does not exist yet starts.</summary>
public enum ConsumerStart
{
    /// <summary>After the last message logged now.</summary>
    NewOnly,

    /// <summary>At a given log sequence.</summary>
    FromSequence,

    /// <summary>At the first message logged at or after a given instant.</summary>
    FromTime,
}

/// <summary>
/// A durable consumer as stored, with its lag, whether a connection holds it and, while one serves it, its
/// window of unacknowledged messages and how much of it is in use (both 0 otherwise).
/// </summary>
public readonly record struct ConsumerState(string Name, string Pattern, ulong Acked, ulong Lag, bool Attached, int MaxInFlight = 0, int InFlight = 0);

/// <summary>Durable consumers: their acknowledged positions, stored beside the messages (one transaction per ack).</summary>
public sealed partial class DurableLog
{
    private readonly Dictionary<string, long> _attached = new(StringComparer.Ordinal);
    private readonly Dictionary<string, DurablePump> _served = new(StringComparer.Ordinal);

    /// <summary>
    /// Attaches connection <paramref name="connectionId"/> to consumer <paramref name="name"/>, creating it at
    /// <paramref name="start"/> when it does not exist; returns its acknowledged sequence (delivery resumes after
    /// it), or null with <paramref name="refusal"/> when another connection holds it or it exists with another pattern.
    /// </summary>
    public ulong? Attach(string name, string pattern, ConsumerStart start, ulong startSequence, DateTimeOffset startTime, long connectionId, out string? refusal)
    {
        refusal = null;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_attached.TryGetValue(name, out var holder) && holder != connectionId)
            {
                refusal = $"durable consumer '{name}' is held by connection {holder}; one connection at a time may hold a consumer";
                return null;
            }

            using var find = _write.CreateCommand();
            find.CommandText = "SELECT pattern, acked FROM consumers WHERE name = $name";
            find.Parameters.AddWithValue("$name", name);
            using (var row = find.ExecuteReader())
            {
                if (row.Read())
                {
                    var stored = row.GetString(0);
                    if (stored != pattern)
                    {
                        refusal = $"durable consumer '{name}' exists with pattern '{stored}'; subscribe with that pattern, or use another consumer name";
                        return null;
                    }

                    _attached[name] = connectionId;
                    return (ulong)row.GetInt64(1);
                }
            }

            var acked = start switch
            {
                ConsumerStart.FromSequence => startSequence == 0 ? 0 : startSequence - 1,
                ConsumerStart.FromTime => FirstAtOrAfter(startTime) is { } s ? s - 1 : _last,
                _ => _last,
            };
            using var insert = _write.CreateCommand();
            insert.CommandText = "INSERT INTO consumers (name, pattern, acked, created) VALUES ($name, $pattern, $acked, $created)";
            insert.Parameters.AddWithValue("$name", name);
            insert.Parameters.AddWithValue("$pattern", pattern);
            insert.Parameters.AddWithValue("$acked", (long)acked);
            insert.Parameters.AddWithValue("$created", UnixNanos(_clock.GetUtcNow()));
            insert.ExecuteNonQuery();
            _checkpointer?.Written(1);
            _attached[name] = connectionId;
            return acked;
        }
    }

    /// <summary>Records <paramref name="pump"/> as what serves consumer <paramref name="name"/> while <paramref name="connectionId"/> holds it, for <see cref="Consumers"/>.</summary>
    internal void Serve(string name, long connectionId, DurablePump pump)
    {
        lock (_gate)
        {
            if (_attached.TryGetValue(name, out var holder) && holder == connectionId)
            {
                _served[name] = pump;
            }
        }
    }

    /// <summary>Releases consumer <paramref name="name"/> if <paramref name="connectionId"/> holds it.</summary>
    public void Detach(string name, long connectionId)
    {
        lock (_gate)
        {
            if (_attached.TryGetValue(name, out var holder) && holder == connectionId)
            {
                _attached.Remove(name);
                _served.Remove(name);
            }
        }
    }

    /// <summary>Stores <paramref name="sequence"/> as consumer <paramref name="name"/>'s position (never moving it back).</summary>
    /// <exception cref="DurableLogUnavailableException">The log could not store it.</exception>
    public void Ack(string name, ulong sequence)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            try
            {
                using var update = _write.CreateCommand();
                update.CommandText = "UPDATE consumers SET acked = $acked WHERE name = $name AND acked < $acked";
                update.Parameters.AddWithValue("$name", name);
                update.Parameters.AddWithValue("$acked", (long)Math.Min(sequence, _last));
                update.ExecuteNonQuery();
                _checkpointer?.Written(1);
            }
            catch (SqliteException e)
            {
                throw new DurableLogUnavailableException($"the durable log could not store consumer '{name}''s ack of {sequence} (SQLite error {e.SqliteErrorCode}: {e.Message})", e);
            }
        }
    }

    /// <summary>Every consumer, with its lag (retained messages after its position, on all durable topics) and, while served, its window.</summary>
    public IReadOnlyList<ConsumerState> Consumers()
    {
        lock (_gate)
        {
            var consumers = new List<ConsumerState>();
            using var list = _write.CreateCommand();

            // Whole rows after the position, plus the rest of the row the position falls in.
            list.CommandText = """
                SELECT name, pattern, acked,
                    (SELECT coalesce(sum(count), 0) FROM batches WHERE seq > c.acked)
                    + coalesce((SELECT max(0, seq + count - 1 - c.acked) FROM batches WHERE seq <= c.acked ORDER BY seq DESC LIMIT 1), 0)
                FROM consumers c ORDER BY name
                """;
            using var rows = list.ExecuteReader();
            while (rows.Read())
            {
                var name = rows.GetString(0);
                var pump = _served.GetValueOrDefault(name);
                consumers.Add(new ConsumerState(name, rows.GetString(1), (ulong)rows.GetInt64(2), (ulong)rows.GetInt64(3), _attached.ContainsKey(name),
                    pump?.MaxInFlight ?? 0, pump?.InFlight ?? 0));
            }

            return consumers;
        }
    }

    private ulong? FirstAtOrAfter(DateTimeOffset time)
    {
        using var find = _write.CreateCommand();
        find.CommandText = "SELECT min(seq) FROM batches WHERE time >= $time"; // a row's messages share its time
        find.Parameters.AddWithValue("$time", UnixNanos(time));
        return find.ExecuteScalar() is long seq ? (ulong)seq : null;
    }
}
