using SQLitePCL;

namespace DaemonEye.Coordination;

/// <summary>The resident database: the tables kept between evaluations, each update applying only what changed.</summary>
public sealed partial class SnapshotDatabase
{
    private static readonly IReadOnlyDictionary<string, int> NoRows = new Dictionary<string, int>();

    private SnapshotTables? _resident;
    private bool _indexed;

    /// <summary>
    /// An empty database kept from one evaluation to the next: <see cref="Update"/> makes its tables hold
    /// an evaluation's data by applying the difference from the previous one (<see cref="SnapshotTables"/>);
    /// the first update, and the first after a failed one, loads in full. Rules read it as they read a
    /// database of <see cref="Create(EvaluationData)"/>, and between updates it is as read-only.
    /// </summary>
    public static SnapshotDatabase CreateResident()
    {
        var connection = Open(Tables + WatchListTable.Schema);
        try
        {
            var database = new SnapshotDatabase(connection, NoRows, 0) { _resident = new SnapshotTables(connection) };
            database.ReadOnly();
            return database;
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Makes the tables hold <paramref name="data"/>, exactly as <see cref="Create(EvaluationData)"/>
    /// would load it: inserts, updates and deletes through prepared statements in one transaction (the
    /// first time: every row, then the indexes). On failure the database is emptied and the next
    /// update loads in full.
    /// </summary>
    public TableChanges Update(EvaluationData data)
    {
        ArgumentNullException.ThrowIfNull(data);
        var resident = _resident ?? throw new InvalidOperationException("only a database of CreateResident is updated");
        var full = !_indexed;
        raw.sqlite3_set_authorizer(_connection.Handle, (delegate_authorizer?)null, null);
        Execute(_connection, "PRAGMA query_only = OFF");
        try
        {
            Dictionary<string, RowChanges> changes;
            using (var transaction = _connection.BeginTransaction())
            {
                changes = resident.Apply(data);
                transaction.Commit();
            }

            if (full)
            {
                Execute(_connection, Indexes);
                _indexed = true;
            }

            TableRows = resident.Rows();
            DuplicateProcesses = resident.DuplicateProcesses;
            ReadOnly();
            return new TableChanges(full, changes);
        }
        catch
        {
            Reset();
            throw;
        }
    }

    /// <summary>Empties the resident tables: the next <see cref="Update"/> loads in full.</summary>
    internal void Reset()
    {
        var resident = _resident ?? throw new InvalidOperationException("only a database of CreateResident is reset");

        // After a failed update the identities may not match the rows: start again from nothing.
        resident.Dispose();
        _connection.Dispose();
        _connection = Open(Tables + WatchListTable.Schema);
        _resident = new SnapshotTables(_connection);
        _indexed = false;
        TableRows = NoRows;
        DuplicateProcesses = 0;
        ReadOnly();
    }

    private void ReadOnly()
    {
        Execute(_connection, "PRAGMA query_only = ON");
        raw.sqlite3_set_authorizer(_connection.Handle, ReadOnlyAuthorizer, null);
    }
}
