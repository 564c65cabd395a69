using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Data.Sqlite;
using SQLitePCL;

namespace DaemonEye.Gateway.Durability;

/// <summary>
/// One logged message as read back: its log sequence, topic and the Publish bytes as published (a
/// slice of its batch's row as read, which nothing changes afterwards).
/// </summary>
public readonly record struct LoggedMessage(ulong Sequence, string Topic, ReadOnlyMemory<byte> Publish);

/// <summary>
/// Reads the durable log in sequence order on its own connection (WAL: never blocks the writer). A
/// read may start at any message, also inside a row (DurableLog.Schema.cs); the last row read is
/// kept, so a consumer that reads on from where it stopped continues in memory and then asks SQLite
/// only for the rows after it.
/// </summary>
/// <remarks>Not thread-safe: one reader per consumer.</remarks>
public sealed class DurableLogReader : IDisposable
{
    private const int SqliteRow = 100;
    private const int SqliteDone = 101;
    private const string Columns = "SELECT seq, topic, ends, data FROM batches";

    private readonly SqliteConnection _connection;
    private readonly sqlite3 _database;
    private readonly sqlite3_stmt _after; // the rows from ?1 on (the row before ends just below ?1)
    private readonly sqlite3_stmt _seek; // the row holding ?1, or the last one before it, and the rows after
    private Row? _row; // the last row read
    private byte[] _topicBytes = [];
    private string _topic = string.Empty;

    internal DurableLogReader(string connectionString)
    {
        _connection = new SqliteConnection(connectionString);
        _connection.Open();
        _database = _connection.Handle ?? throw new InvalidOperationException("the connection is not open");
        _after = Prepare($"{Columns} WHERE seq >= ?1 ORDER BY seq LIMIT ?2");
        _seek = Prepare($"{Columns} WHERE seq >= coalesce((SELECT max(seq) FROM batches WHERE seq <= ?1), 0) ORDER BY seq LIMIT ?2");
    }

    /// <summary>Adds to <paramref name="into"/> up to <paramref name="max"/> messages after sequence <paramref name="after"/>; returns how many.</summary>
    public int Read(ulong after, int max, List<LoggedMessage> into)
    {
        var next = after + 1;
        var added = 0;
        if (max <= 0)
        {
            return 0;
        }

        if (_row is { } kept && next >= kept.First && next <= kept.Last)
        {
            added = kept.Take(ref next, max, into);
            if (added == max)
            {
                return added;
            }
        }

        // Rows never overlap: when the kept row ends just before, every row holding `next` or later starts at `next` or later.
        var statement = _row is { } last && next == last.Last + 1 ? _after : _seek;
        try
        {
            Check(raw.sqlite3_bind_int64(statement, 1, (long)next));
            Check(raw.sqlite3_bind_int(statement, 2, max - added + 1)); // the seek's first row may hold nothing after `after`
            while (added < max)
            {
                var rc = raw.sqlite3_step(statement);
                if (rc == SqliteDone)
                {
                    break;
                }

                if (rc != SqliteRow)
                {
                    Check(rc);
                }

                var row = _row = ReadRow(statement);
                added += row.Take(ref next, max - added, into);
            }
        }
        finally
        {
            // Ends the read transaction, which would otherwise hold back checkpoints.
            raw.sqlite3_reset(statement);
        }

        return added;
    }

    public void Dispose()
    {
        _after.Dispose();
        _seek.Dispose();
        _connection.Dispose();
    }

    private Row ReadRow(sqlite3_stmt statement)
    {
        var first = (ulong)raw.sqlite3_column_int64(statement, 0);
        var topic = raw.sqlite3_column_blob(statement, 1); // the text's UTF-8 bytes
        if (!topic.SequenceEqual(_topicBytes))
        {
            _topicBytes = topic.ToArray();
            _topic = Encoding.UTF8.GetString(topic);
        }

        var ends = raw.sqlite3_column_blob(statement, 2);
        var data = raw.sqlite3_column_blob(statement, 3).ToArray();
        var offsets = MemoryMarshal.Cast<byte, int>(ends).ToArray();
        if (ends.Length % sizeof(int) != 0 || offsets.Length == 0 || offsets[^1] != data.Length)
        {
            throw new InvalidDataException($"the durable log's row at sequence {first} is malformed: {ends.Length} bytes of end offsets for {data.Length} bytes of messages");
        }

        return new Row(first, _topic, offsets, data);
    }

    private sqlite3_stmt Prepare(string sql)
    {
        Check(raw.sqlite3_prepare_v2(_database, sql, out var statement));
        return statement;
    }

    private void Check(int rc)
    {
        if (rc != 0)
        {
            throw new SqliteException(raw.sqlite3_errmsg(_database).utf8_to_string(), rc);
        }
    }

    /// <summary>One packed row as read: messages <see cref="First"/> .. <see cref="Last"/>.</summary>
    private sealed class Row
    {
        private readonly string _topic;
        private readonly int[] _ends;
        private readonly byte[] _data;

        public Row(ulong first, string topic, int[] ends, byte[] data)
        {
            First = first;
            Last = first + (ulong)ends.Length - 1;
            _topic = topic;
            _ends = ends;
            _data = data;
        }

        public ulong First { get; }

        public ulong Last { get; }

        /// <summary>Adds up to <paramref name="max"/> of this row's messages from <paramref name="next"/> on (from its first, if later), moving <paramref name="next"/> past them.</summary>
        public int Take(ref ulong next, int max, List<LoggedMessage> into)
        {
            var from = Math.Max(next, First);
            if (from > Last)
            {
                return 0;
            }

            var index = (int)(from - First);
            var count = Math.Min(max, _ends.Length - index);
            for (var i = index; i < index + count; i++)
            {
                var start = i == 0 ? 0 : _ends[i - 1];
                into.Add(new LoggedMessage(First + (ulong)i, _topic, _data.AsMemory(start, _ends[i] - start)));
            }

            next = from + (ulong)count;
            return count;
        }
    }
}
