using System.Globalization;
using Microsoft.Data.Sqlite;
using SQLitePCL;

namespace DaemonEye.Coordination;

/// <summary>One event table's window now: rows held, and what came in and went out since start.</summary>
public sealed record EventWindowStats(string Table, int Rows, long Appended, long AgedOut, long Overflowed, TimeSpan MaxAge, int MaxRows);

/// <summary>
/// The sliding event windows event rules read: one SQLite database in memory, kept for the agent's
/// life, with one table per event type (<see cref="Schema"/>: process_events, connection_events,
/// filesystem_events) and the watch lists. Events are appended as they arrive (one transaction per
/// round); each table keeps the rows that arrived within its max age and at most its max rows (the
/// oldest go first); what ages out and what overflows is counted per table. Rules run over it
/// read-only: while one runs, the connection is <c>PRAGMA query_only</c> and the authorizer allows
/// nothing but reading, as over the snapshot tables (<see cref="SnapshotDatabase"/>). Not thread-safe:
/// one owner (the event rule loop) appends, prunes and evaluates.
/// </summary>
public sealed partial class EventWindowDatabase : IDisposable
{
    private readonly SqliteConnection _connection;
    private readonly TimeProvider _time;
    private readonly Dictionary<string, Window> _windows = new(StringComparer.Ordinal);
    private readonly RowInserter _insertProcess;
    private readonly RowInserter _insertConnection;
    private readonly RowInserter _insertFile;
    private long _seq;
    private bool _inRound;

    public EventWindowDatabase(EventWindowsOptions options, IReadOnlyDictionary<string, IReadOnlyList<string>> watchLists, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(watchLists);
        _time = time;
        _connection = SnapshotDatabase.Open(Schema);
        try
        {
            foreach (var (table, window) in options.All)
            {
                _windows[table] = new Window(table, window.MaxAge, window.MaxRows, Prepare(_connection, $"DELETE FROM {table} WHERE seq <= $1", 1));
            }

            WatchListTable.Load(_connection, watchLists);

            _insertProcess = new RowInserter(_connection, Insert(ProcessEvents, 25));
            _insertConnection = new RowInserter(_connection, Insert(ConnectionEvents, 21));
            _insertFile = new RowInserter(_connection, Insert(FilesystemEvents, 17));
        }
        catch
        {
            _connection.Dispose();
            throw;
        }
    }

    /// <summary>Why <paramref name="sql"/> cannot be an event rule (syntax, unknown table or column, not one read-only SELECT), or null.</summary>
    public static string? Check(string sql) => SnapshotDatabase.Check(sql, Schema);

    /// <summary>The tables <paramref name="sql"/> reads, as SQLite reports them (<see cref="SnapshotDatabase.TablesRead(string)"/>), sorted.</summary>
    public static IReadOnlyList<string> TablesRead(string sql) => SnapshotDatabase.TablesRead(sql, Schema);

    /// <summary>Each table's window now.</summary>
    public IReadOnlyList<EventWindowStats> Stats() =>
        [.. _windows.Values.Select(w => new EventWindowStats(w.Table, w.Arrivals.Count, w.Appended, w.AgedOut, w.Overflowed, w.MaxAge, w.MaxRows))];

    /// <summary>Rows held in <paramref name="table"/> now.</summary>
    public int Rows(string table) => _windows[table].Arrivals.Count;

    /// <summary>Starts a round of appends (one transaction); <see cref="EndRound"/> commits it and applies the retention.</summary>
    public void BeginRound()
    {
        if (!_inRound)
        {
            SnapshotDatabase.Execute(_connection, "BEGIN");
            _inRound = true;
        }
    }

    /// <summary>Commits the round's appends, then drops what aged out or overflowed (counted per table).</summary>
    public void EndRound()
    {
        if (_inRound)
        {
            SnapshotDatabase.Execute(_connection, "COMMIT");
            _inRound = false;
        }

        Prune();
    }

    /// <summary>Drops, per table, the rows older than its max age and the oldest past its max rows.</summary>
    public void Prune()
    {
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        foreach (var window in _windows.Values)
        {
            var cutoff = now - (long)window.MaxAge.TotalMilliseconds;
            long last = -1;
            while (window.Arrivals.TryPeek(out var oldest) && oldest.ArrivedUnixMs < cutoff)
            {
                last = window.Arrivals.Dequeue().Seq;
                window.AgedOut++;
            }

            while (window.Arrivals.Count > window.MaxRows)
            {
                last = window.Arrivals.Dequeue().Seq;
                window.Overflowed++;
            }

            if (last >= 0)
            {
                Run(window.Delete, last);
            }
        }
    }

    /// <summary>Runs one rule read-only over the windows; an error (SQL, not authorized, over the time limit) comes back in the result.</summary>
    public RuleEvaluation Evaluate(string sql, TimeSpan timeLimit, int maxRows)
    {
        if (_inRound)
        {
            throw new InvalidOperationException("a round of appends is open; end it before evaluating");
        }

        SnapshotDatabase.Execute(_connection, "PRAGMA query_only = ON");
        raw.sqlite3_set_authorizer(_connection.Handle, SnapshotDatabase.ReadOnlyAuthorizer, null);
        try
        {
            return SnapshotDatabase.Evaluate(_connection, sql, timeLimit, _time, maxRows);
        }
        finally
        {
            raw.sqlite3_set_authorizer(_connection.Handle, (delegate_authorizer?)null, null);
            SnapshotDatabase.Execute(_connection, "PRAGMA query_only = OFF");
        }
    }

    public void Dispose()
    {
        _insertProcess?.Dispose();
        _insertConnection?.Dispose();
        _insertFile?.Dispose();
        foreach (var window in _windows.Values)
        {
            window.Delete.Dispose();
        }

        _connection.Dispose();
    }

    private (long Seq, long ArrivedUnixMs) Arrive(string table)
    {
        var window = _windows[table];
        var arrival = (++_seq, _time.GetUtcNow().ToUnixTimeMilliseconds());
        window.Arrivals.Enqueue(arrival);
        window.Appended++;
        return arrival;
    }

    private static string Insert(string table, int count) => $"INSERT INTO {table} VALUES ({string.Join(',', Enumerable.Repeat("?", count))})";

    private static SqliteCommand Prepare(SqliteConnection connection, string sql, int count)
    {
        var command = connection.CreateCommand();
        command.CommandText = sql;
        for (var i = 0; i < count; i++)
        {
            command.Parameters.Add(new SqliteParameter { ParameterName = "$" + (i + 1).ToString(CultureInfo.InvariantCulture) });
        }

        command.Prepare();
        return command;
    }

    private static void Run(SqliteCommand command, params object?[] values)
    {
        for (var i = 0; i < values.Length; i++)
        {
            command.Parameters[i].Value = values[i] ?? DBNull.Value;
        }

        command.ExecuteNonQuery();
    }

    /// <summary>One table's window: the arrival order (seq, when) of the rows it holds, oldest first, and its counters.</summary>
    private sealed class Window(string table, TimeSpan maxAge, int maxRows, SqliteCommand delete)
    {
        public string Table { get; } = table;

        public TimeSpan MaxAge { get; } = maxAge;

        public int MaxRows { get; } = maxRows;

        public SqliteCommand Delete { get; } = delete;

        public Queue<(long Seq, long ArrivedUnixMs)> Arrivals { get; } = new();

        public long Appended { get; set; }

        public long AgedOut { get; set; }

        public long Overflowed { get; set; }
    }
}
