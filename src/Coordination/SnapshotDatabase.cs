using System.Globalization;
using DaemonEye.Protocol.Process.V1;
using Microsoft.Data.Sqlite;
using SQLitePCL;

namespace DaemonEye.Coordination;

/// <summary>The outcome of one rule over one snapshot.</summary>
public sealed record RuleEvaluation(IReadOnlyList<string> Columns, IReadOnlyList<string?[]> Rows, long TotalRows, TimeSpan Elapsed, string? Error);

/// <summary>
/// Collector answers as SQLite tables in memory, for detection rules: processes (procmond's
/// process.snapshot), connections and listening ports (netmond's network.snapshot), file events and
/// hashes (fsmond's file.snapshot), and the configured watch lists, loaded together so one rule may
/// join them. Rules are read-only three times over: a rule must compile to one statement SQLite
/// reports as read-only (checked at load), the connection is <c>PRAGMA query_only</c>, and an
/// authorizer allows nothing but reading (SELECT, READ, FUNCTION, RECURSIVE) while rules run. Each
/// rule has a time limit enforced by a progress handler that interrupts it. Which tables a rule reads
/// is SQLite's own answer (<see cref="TablesRead(string)"/>).
/// </summary>
/// <remarks>
/// Processes reported by several collectors (same pid and start time) appear once; <c>snapshots</c>
/// has one row per process snapshot. Schema: <see cref="Schema"/>, docs/protocol.md.
/// </remarks>
public sealed partial class SnapshotDatabase : IDisposable
{
    private const int SqliteOk = 0;
    private const int SqliteDeny = 1;
    private const int SqliteInterrupt = 9;

    // Authorizer action codes that only read (sqlite3.h).
    private const int SqliteRead = 20;
    private const int SqliteSelect = 21;
    private const int SqliteFunction = 31;
    private const int SqliteRecursive = 33;

    private SqliteConnection _connection;

    private SnapshotDatabase(SqliteConnection connection, IReadOnlyDictionary<string, int> rows, int duplicates)
    {
        _connection = connection;
        TableRows = rows;
        DuplicateProcesses = duplicates;
    }

    /// <summary>Processes in the table.</summary>
    public int Processes => TableRows.TryGetValue("processes", out var n) ? n : 0;

    /// <summary>Rows loaded per table.</summary>
    public IReadOnlyDictionary<string, int> TableRows { get; private set; }

    /// <summary>Processes reported by more than one collector (kept once).</summary>
    public int DuplicateProcesses { get; private set; }

    /// <summary>Loads process snapshots only; the tables are read-only from then on.</summary>
    public static SnapshotDatabase Create(IEnumerable<ProcessSnapshot> snapshots)
    {
        ArgumentNullException.ThrowIfNull(snapshots);
        var data = new EvaluationData();
        data.Processes.AddRange(snapshots);
        return Create(data);
    }

    /// <summary>Loads every answer of <paramref name="data"/> into one database; the tables are read-only from then on.</summary>
    public static SnapshotDatabase Create(EvaluationData data)
    {
        ArgumentNullException.ThrowIfNull(data);
        // The indexes come after the rows (Load).
        var connection = Open(Tables + WatchListTable.Schema);
        try
        {
            var rows = new Dictionary<string, int>(StringComparer.Ordinal);
            Load(connection, data, rows, out var duplicates);
            Execute(connection, "PRAGMA query_only = ON");
            raw.sqlite3_set_authorizer(connection.Handle, ReadOnlyAuthorizer, null);
            return new SnapshotDatabase(connection, rows, duplicates);
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The tables <paramref name="sql"/> reads, as SQLite itself reports them while it compiles the
    /// statement, from two of its own answers: the authorizer's SQLITE_READ calls (one per column read,
    /// with the table's name; views and common table expressions resolve to the tables under them) and
    /// the compiled program (EXPLAIN): every b-tree it opens for reading (OpenRead of a table or of one
    /// of its indexes, e.g. for <c>count(*)</c>, which reads no column), named through
    /// <c>sqlite_schema</c>. Sorted; empty when the SQL does not compile.
    /// </summary>
    public static IReadOnlyList<string> TablesRead(string sql) => TablesRead(sql, Schema);

    /// <summary><see cref="TablesRead(string)"/> against another schema (the event windows').</summary>
    internal static IReadOnlyList<string> TablesRead(string sql, string schema)
    {
        ArgumentNullException.ThrowIfNull(sql);
        using var connection = Open(schema);
        var tables = new SortedSet<string>(StringComparer.Ordinal);
        raw.sqlite3_set_authorizer(connection.Handle, (_, action, table, _, database, _) =>
        {
            if (action == SqliteRead && database.utf8_to_string() == "main" && table.utf8_to_string() is { Length: > 0 } name)
            {
                tables.Add(name.ToLowerInvariant());
            }

            return SqliteOk;
        }, null);
        var rc = raw.sqlite3_prepare_v2(connection.Handle, sql, out var statement, out _);
        statement?.Dispose();
        if (rc != SqliteOk)
        {
            return [];
        }

        raw.sqlite3_set_authorizer(connection.Handle, (delegate_authorizer?)null, null);
        var byRootPage = new Dictionary<long, string>();
        using (var pages = connection.CreateCommand())
        {
            pages.CommandText = "SELECT rootpage, tbl_name FROM sqlite_schema WHERE rootpage > 0";
            using var reader = pages.ExecuteReader();
            while (reader.Read())
            {
                byRootPage[reader.GetInt64(0)] = reader.GetString(1).ToLowerInvariant();
            }
        }

        using (var explain = connection.CreateCommand())
        {
            explain.CommandText = "EXPLAIN " + sql;
            using var reader = explain.ExecuteReader();
            while (reader.Read())
            {
                // Columns: addr, opcode, p1, p2, p3, ...; OpenRead/ReopenIdx: p2 is the root page, p3 the database (0: main).
                var opcode = reader.GetString(1);
                if (opcode is "OpenRead" or "ReopenIdx" && reader.GetInt64(4) == 0 && byRootPage.TryGetValue(reader.GetInt64(3), out var table))
                {
                    tables.Add(table);
                }
            }
        }

        return [.. tables];
    }

    /// <summary>
    /// Why <paramref name="sql"/> cannot be a rule (syntax, unknown table or column, more than one
    /// statement, not read-only), or null when it can.
    /// </summary>
    public static string? Check(string sql) => Check(sql, Schema);

    /// <summary><see cref="Check(string)"/> against another schema (the event windows').</summary>
    internal static string? Check(string sql, string schema)
    {
        ArgumentNullException.ThrowIfNull(sql);
        using var connection = Open(schema);
        var rc = raw.sqlite3_prepare_v2(connection.Handle, sql, out var statement, out var tail);
        using (statement)
        {
            if (rc != SqliteOk)
            {
                return raw.sqlite3_errmsg(connection.Handle).utf8_to_string();
            }

            if (statement is null || statement.IsInvalid)
            {
                return "holds no SQL statement; a rule is one SELECT";
            }

            if (!string.IsNullOrWhiteSpace(tail?.TrimEnd(';', ' ', '\n', '\r', '\t')))
            {
                return "holds more than one statement; a rule is one SELECT";
            }

            if (raw.sqlite3_stmt_readonly(statement) == 0)
            {
                return "is not read-only; a rule may only read the tables (SELECT), never modify them";
            }

        }

        // What reads but is still not a plain query (PRAGMA, ATTACH...) fails under the evaluation's authorizer.
        raw.sqlite3_set_authorizer(connection.Handle, ReadOnlyAuthorizer, null);
        rc = raw.sqlite3_prepare_v2(connection.Handle, sql, out var authorized, out _);
        using (authorized)
        {
            if (rc != SqliteOk)
            {
                return $"is refused: a rule may only read the tables with SELECT ({raw.sqlite3_errmsg(connection.Handle).utf8_to_string()})";
            }

            if (raw.sqlite3_column_count(authorized) == 0)
            {
                return "returns no columns; a rule is a SELECT whose rows become alerts";
            }
        }

        return null;
    }

    /// <summary>Runs one rule's SQL; an error (SQL, not authorized, over the time limit) comes back in the result.</summary>
    public RuleEvaluation Evaluate(string sql, TimeSpan timeLimit, TimeProvider time, int maxRows = int.MaxValue) =>
        Evaluate(_connection, sql, timeLimit, time, maxRows);

    /// <summary><see cref="Evaluate(string, TimeSpan, TimeProvider, int)"/> on any rule connection (the event windows' too).</summary>
    internal static RuleEvaluation Evaluate(SqliteConnection connection, string sql, TimeSpan timeLimit, TimeProvider time, int maxRows)
    {
        ArgumentNullException.ThrowIfNull(sql);
        ArgumentNullException.ThrowIfNull(time);
        var started = time.GetTimestamp();
        var columns = new List<string>();
        var rows = new List<string?[]>();
        long total = 0;
        var interrupted = false;
        raw.sqlite3_progress_handler(connection.Handle, 1000, _ =>
        {
            if (time.GetElapsedTime(started) > timeLimit)
            {
                interrupted = true;
                return 1;
            }

            return 0;
        }, null);
        try
        {
            using var command = connection.CreateCommand();
            command.CommandText = sql;
            using var reader = command.ExecuteReader();
            for (var i = 0; i < reader.FieldCount; i++)
            {
                columns.Add(reader.GetName(i));
            }

            while (reader.Read())
            {
                total++;
                if (rows.Count >= maxRows)
                {
                    continue;
                }

                var row = new string?[reader.FieldCount];
                for (var i = 0; i < row.Length; i++)
                {
                    row[i] = reader.IsDBNull(i) ? null : Convert.ToString(reader.GetValue(i), CultureInfo.InvariantCulture);
                }

                rows.Add(row);
            }

            return new RuleEvaluation(columns, rows, total, time.GetElapsedTime(started), null);
        }
        catch (SqliteException ex)
        {
            var error = interrupted || ex.SqliteErrorCode == SqliteInterrupt
                ? $"exceeded its time limit of {timeLimit.TotalMilliseconds:0} ms and was interrupted"
                : ex.SqliteErrorCode == 23
                    ? $"was refused: a rule may only read the tables ({ex.Message})"
                    : $"failed: {ex.Message}";
            return new RuleEvaluation(columns, [], 0, time.GetElapsedTime(started), error);
        }
        finally
        {
            raw.sqlite3_progress_handler(connection.Handle, 0, null, null);
        }
    }

    public void Dispose()
    {
        _resident?.Dispose();
        _connection.Dispose();
    }

    internal static SqliteConnection Open(string schema)
    {
        var connection = new SqliteConnection("Data Source=:memory:");
        connection.Open();
        Execute(connection, schema);
        return connection;
    }

    internal static void Execute(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    internal static int ReadOnlyAuthorizer(object userData, int actionCode, utf8z param0, utf8z param1, utf8z dbName, utf8z trigger) =>
        actionCode is SqliteRead or SqliteSelect or SqliteFunction or SqliteRecursive ? SqliteOk : SqliteDeny;
}
