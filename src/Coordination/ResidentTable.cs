using System.Runtime.InteropServices;
using Microsoft.Data.Sqlite;

namespace DaemonEye.Coordination;

/// <summary>Rows one table changed by in one update of the resident tables.</summary>
public readonly record struct RowChanges(int Inserted, int Updated, int Deleted)
{
    public int Total => Inserted + Updated + Deleted;
}

/// <summary>
/// One SQLite table kept between evaluations (<see cref="SnapshotTables"/>): the rows the table holds
/// by their identity (key → rowid and the value the row was made from), with a prepared INSERT, an
/// UPDATE of every column by rowid and a DELETE by rowid. An update offers each row of the new data
/// once (<see cref="Offer"/>): a new key is inserted, a known key whose value differs is updated, an
/// equal one is left alone; <see cref="Sweep"/> then deletes the rows not offered. The table ends
/// holding exactly the rows a full load of the same data would, whatever the earlier data was.
/// </summary>
/// <remarks>
/// Values are compared with <typeparamref name="TRow"/>'s equality (for protobuf messages: every
/// field, unknown fields included), a superset of what the row holds: an item may be updated with
/// the same column values, never left stale. Which rowid a row has (and so the order a rule without
/// ORDER BY reads rows in) is not that of a full load.
/// </remarks>
internal sealed class ResidentTable<TKey, TRow> : IDisposable
    where TKey : notnull, IEquatable<TKey>
    where TRow : IEquatable<TRow>
{
    private readonly Dictionary<TKey, Entry> _rows = [];
    private readonly List<TKey> _gone = [];
    private readonly Func<RowInserter, TRow, RowInserter> _bind;
    private readonly RowInserter _insert;
    private readonly RowInserter _update;
    private readonly RowInserter _delete;
    private int _generation;
    private int _inserted;
    private int _updated;
    private int _deleted;

    public ResidentTable(SqliteConnection connection, string table, int columns, Func<RowInserter, TRow, RowInserter> bind)
    {
        Name = table;
        _bind = bind;
        var names = ColumnNames(connection, table);
        if (names.Count != columns)
        {
            throw new InvalidOperationException($"table {table} has {names.Count} columns; its rows bind {columns}");
        }

        var values = string.Join(',', Enumerable.Repeat("?", columns));
        _insert = new RowInserter(connection, $"INSERT INTO {table} VALUES ({values})");
        _update = new RowInserter(connection, $"UPDATE {table} SET ({string.Join(',', names)}) = ({values}) WHERE rowid = ?");
        _delete = new RowInserter(connection, $"DELETE FROM {table} WHERE rowid = ?");
    }

    public string Name { get; }

    /// <summary>Rows in the table.</summary>
    public int Count => _rows.Count;

    /// <summary>What the current (or last) update changed.</summary>
    public RowChanges Changes => new(_inserted, _updated, _deleted);

    /// <summary>Starts an update: no key is offered yet, nothing changed.</summary>
    public void Begin(int expectedRows)
    {
        _generation++;
        _inserted = _updated = _deleted = 0;
        _rows.EnsureCapacity(expectedRows);
    }

    /// <summary>
    /// Makes the row of <paramref name="key"/> hold <paramref name="row"/>; false (nothing done) when
    /// this update already offered <paramref name="key"/>.
    /// </summary>
    public bool Offer(TKey key, TRow row)
    {
        ref var entry = ref CollectionsMarshal.GetValueRefOrAddDefault(_rows, key, out var known);
        if (known)
        {
            if (entry.Generation == _generation)
            {
                return false;
            }

            entry.Generation = _generation;
            if (!entry.Row.Equals(row))
            {
                _bind(_update, row).Integer(entry.RowId).Execute();
                _updated++;
            }

            // The new value is kept (equal or not): the next update compares with what the table now holds.
            entry.Row = row;
            return true;
        }

        _bind(_insert, row).Insert();
        entry = new Entry { RowId = _insert.LastInsertRowId, Row = row, Generation = _generation };
        _inserted++;
        return true;
    }

    /// <summary>Ends an update: deletes every row whose key it did not offer.</summary>
    public void Sweep()
    {
        foreach (var (key, entry) in _rows)
        {
            if (entry.Generation != _generation)
            {
                _delete.Integer(entry.RowId).Execute();
                _gone.Add(key);
            }
        }

        foreach (var key in _gone)
        {
            _rows.Remove(key);
        }

        _deleted = _gone.Count;
        _gone.Clear();
    }

    public void Dispose()
    {
        _insert.Dispose();
        _update.Dispose();
        _delete.Dispose();
    }

    private static List<string> ColumnNames(SqliteConnection connection, string table)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT name FROM pragma_table_info($table) ORDER BY cid";
        command.Parameters.AddWithValue("$table", table);
        using var reader = command.ExecuteReader();
        var names = new List<string>();
        while (reader.Read())
        {
            names.Add(reader.GetString(0));
        }

        return names;
    }

    private struct Entry
    {
        public long RowId;
        public TRow Row;
        public int Generation;
    }
}
