using System.Globalization;
using DaemonEye.Protocol.Process.V1;
using Microsoft.Data.Sqlite;
using SQLitePCL;

namespace DaemonEye.Coordination;

/// <summary>The outcome of one rule over one snapshot.</summary>
public sealed record RuleEvaluation(IReadOnlyList<string> Columns, IReadOnlyList<string?[]> Rows, long TotalRows, TimeSpan Elapsed, string? Error);

/// <summary>
/// Process snapshots as SQLite tables in memory, for detection rules. Rules are read-only three
/// times over: a rule must compile to one statement SQLite reports as read-only (checked at load),
/// the connection is <c>PRAGMA query_only</c>, and an authorizer allows nothing but reading
/// (SELECT, READ, FUNCTION, RECURSIVE) while rules run. Each rule has a time limit enforced by a
/// progress handler that interrupts it.
/// </summary>
/// <remarks>
/// Tables: <c>processes</c> (one row per process; processes reported by several collectors, same
/// pid and start time, appear once) and <c>snapshots</c> (one row per collector snapshot).
/// </remarks>
public sealed class SnapshotDatabase : IDisposable
{
    public const string Schema = """
        CREATE TABLE processes (
          pid INTEGER NOT NULL,
          ppid INTEGER NOT NULL,
          name TEXT NOT NULL,
          comm TEXT NOT NULL,
          executable TEXT NOT NULL,
          command_line TEXT NOT NULL,
          uid INTEGER NOT NULL,
          user TEXT NOT NULL,
          start_time_unix_ms INTEGER NOT NULL,
          cpu_percent REAL NOT NULL,
          rss_bytes INTEGER NOT NULL,
          threads INTEGER NOT NULL,
          exe_sha256 TEXT NOT NULL,
          exe_deleted INTEGER NOT NULL,
          collector_id TEXT NOT NULL,
          PRIMARY KEY (pid, start_time_unix_ms)
        );
        CREATE INDEX processes_name ON processes(name);
        CREATE INDEX processes_ppid ON processes(ppid);
        CREATE TABLE snapshots (
          collector_id TEXT NOT NULL,
          taken_unix_ms INTEGER NOT NULL,
          reason TEXT NOT NULL,
          process_count INTEGER NOT NULL,
          scan_duration_us INTEGER NOT NULL
        );
        """;

    private const int SqliteOk = 0;
    private const int SqliteDeny = 1;
    private const int SqliteInterrupt = 9;

    // Authorizer action codes that only read (sqlite3.h).
    private const int SqliteRead = 20;
    private const int SqliteSelect = 21;
    private const int SqliteFunction = 31;
    private const int SqliteRecursive = 33;

    private readonly SqliteConnection _connection;

    private SnapshotDatabase(SqliteConnection connection, int processes, int duplicates)
    {
        _connection = connection;
        Processes = processes;
        DuplicateProcesses = duplicates;
    }

    /// <summary>Processes in the table.</summary>
    public int Processes { get; }

    /// <summary>Processes reported by more than one collector (kept once).</summary>
    public int DuplicateProcesses { get; }

    /// <summary>Loads the snapshots; the tables are read-only from then on.</summary>
    public static SnapshotDatabase Create(IEnumerable<ProcessSnapshot> snapshots)
    {
        ArgumentNullException.ThrowIfNull(snapshots);
        var connection = Open();
        var inserted = 0;
        var duplicates = 0;
        try
        {
            using (var transaction = connection.BeginTransaction())
            {
                using var process = connection.CreateCommand();
                process.Transaction = transaction;
                process.CommandText = "INSERT OR IGNORE INTO processes VALUES ($pid,$ppid,$name,$comm,$exe,$cmd,$uid,$user,$start,$cpu,$rss,$threads,$sha,$deleted,$collector)";
                var p = new[] { "$pid", "$ppid", "$name", "$comm", "$exe", "$cmd", "$uid", "$user", "$start", "$cpu", "$rss", "$threads", "$sha", "$deleted", "$collector" }
                    .Select(n => process.Parameters.Add(new SqliteParameter { ParameterName = n })).ToArray();
                using var snapshot = connection.CreateCommand();
                snapshot.Transaction = transaction;
                snapshot.CommandText = "INSERT INTO snapshots VALUES ($c,$t,$r,$n,$d)";
                var s = new[] { "$c", "$t", "$r", "$n", "$d" }.Select(n => snapshot.Parameters.Add(new SqliteParameter { ParameterName = n })).ToArray();
                process.Prepare();
                foreach (var snap in snapshots)
                {
                    s[0].Value = snap.CollectorId;
                    s[1].Value = (long)snap.TakenUnixMs;
                    s[2].Value = snap.Reason;
                    s[3].Value = snap.Processes.Count;
                    s[4].Value = (long)snap.ScanDurationUs;
                    snapshot.ExecuteNonQuery();
                    foreach (var info in snap.Processes)
                    {
                        p[0].Value = (long)info.Pid;
                        p[1].Value = (long)info.Ppid;
                        p[2].Value = info.Name;
                        p[3].Value = info.Comm;
                        p[4].Value = info.Executable;
                        p[5].Value = string.Join(' ', info.CommandLine);
                        p[6].Value = (long)info.Uid;
                        p[7].Value = info.User;
                        p[8].Value = (long)info.StartTimeUnixMs;
                        p[9].Value = info.CpuPercent;
                        p[10].Value = (long)info.RssBytes;
                        p[11].Value = (long)info.Threads;
                        p[12].Value = info.ExeSha256;
                        p[13].Value = info.ExeDeleted ? 1 : 0;
                        p[14].Value = snap.CollectorId;
                        if (process.ExecuteNonQuery() == 1)
                        {
                            inserted++;
                        }
                        else
                        {
                            duplicates++;
                        }
                    }
                }

                transaction.Commit();
            }

            Execute(connection, "PRAGMA query_only = ON");
            raw.sqlite3_set_authorizer(connection.Handle, ReadOnlyAuthorizer, null);
            return new SnapshotDatabase(connection, inserted, duplicates);
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Why <paramref name="sql"/> cannot be a rule (syntax, unknown table or column, more than one
    /// statement, not read-only), or null when it can.
    /// </summary>
    public static string? Check(string sql)
    {
        ArgumentNullException.ThrowIfNull(sql);
        using var connection = Open();
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
    public RuleEvaluation Evaluate(string sql, TimeSpan timeLimit, TimeProvider time, int maxRows = int.MaxValue)
    {
        ArgumentNullException.ThrowIfNull(sql);
        ArgumentNullException.ThrowIfNull(time);
        var started = time.GetTimestamp();
        var columns = new List<string>();
        var rows = new List<string?[]>();
        long total = 0;
        var interrupted = false;
        raw.sqlite3_progress_handler(_connection.Handle, 1000, _ =>
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
            using var command = _connection.CreateCommand();
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
            raw.sqlite3_progress_handler(_connection.Handle, 0, null, null);
        }
    }

    public void Dispose() => _connection.Dispose();

    private static SqliteConnection Open()
    {
        var connection = new SqliteConnection("Data Source=:memory:");
        connection.Open();
        Execute(connection, Schema);
        return connection;
    }

    private static void Execute(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    private static int ReadOnlyAuthorizer(object userData, int actionCode, utf8z param0, utf8z param1, utf8z dbName, utf8z trigger) =>
        actionCode is SqliteRead or SqliteSelect or SqliteFunction or SqliteRecursive ? SqliteOk : SqliteDeny;
}
