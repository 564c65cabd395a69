using Microsoft.Data.Sqlite;

namespace DaemonEye.Gateway.Durability;

/// <summary>One logged message as read back: its log sequence, topic and the Publish bytes as published.</summary>
public readonly record struct LoggedMessage(ulong Sequence, string Topic, byte[] Publish);

/// <summary>Reads the durable log in sequence order on its own connection (WAL: never blocks the writer).</summary>
public sealed class DurableLogReader : IDisposable
{
    private readonly SqliteConnection _connection;
    private readonly SqliteCommand _read;
    private readonly SqliteParameter _after, _limit;

    internal DurableLogReader(string connectionString)
    {
        _connection = new SqliteConnection(connectionString);
        _connection.Open();
        _read = _connection.CreateCommand();
        _read.CommandText = "SELECT seq, topic, publish FROM messages WHERE seq > $after ORDER BY seq LIMIT $limit";
        _after = _read.Parameters.Add("$after", SqliteType.Integer);
        _limit = _read.Parameters.Add("$limit", SqliteType.Integer);
        _read.Prepare();
    }

    /// <summary>Adds to <paramref name="into"/> up to <paramref name="max"/> messages after sequence <paramref name="after"/>; returns how many.</summary>
    public int Read(ulong after, int max, List<LoggedMessage> into)
    {
        _after.Value = (long)after;
        _limit.Value = max;
        var count = 0;
        using var rows = _read.ExecuteReader();
        while (rows.Read())
        {
            into.Add(new LoggedMessage((ulong)rows.GetInt64(0), rows.GetString(1), (byte[])rows.GetValue(2)));
            count++;
        }

        return count;
    }

    public void Dispose()
    {
        _read.Dispose();
        _connection.Dispose();
    }
}
