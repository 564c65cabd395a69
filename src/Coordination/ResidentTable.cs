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
/// once (<see cref="Offer"/>): a new key is inserted, a known key whose columns differ is updated, one
/// whose columns are the same is left alone; <see cref="Sweep"/> then deletes the rows not offered. The
/// table ends holding exactly the rows a full load of the same data would, whatever the earlier data was.
/// </summary>
/// <remarks>
/// <para>
/// A known key's row is compared with the offered one by the table's <c>sameColumns</c>: true only when
/// every column the two would bind is equal (it may say false for equal columns, which costs an update
/// that writes the same values, never a stale row). Fields of the message that no column holds (a
/// connection's round-trip time, a process's missing-field list) do not make an update.
/// </para>
/// <para>
/// A table may also be given <c>fixedValue</c>: the keys that name a value which never changes once made,
/// such as a file event named by (collector, run, sequence), which its collector numbers once and never
/// alters. A held key for which it is true is not compared at all: the row it holds is kept. That is the
/// table's one assumption about its data, and it is only as good as the source's promise; keys for which
/// it is false (an event from a collector that gives no run) are compared as above.
/// </para>
/// <para>
/// When a known key's row is unchanged the held value is kept and the offered one dropped, so the new
/// answer's messages die young. Which rowid a row has (and so the order a rule without ORDER BY reads
/// rows in) is not that of a full load.
/// </para>
/// </remarks>
internal sealed class ResidentTable<TKey, TRow> : IDisposable
    where TKey : notnull, IEquatable<TKey>
{
    private readonly Dictionary<TKey, Entry> _rows = [];
    private readonly List<TKey> _gone = [];
    private readonly Func<RowInserter, TRow, RowInserter> _bind;
    private readonly Func<TRow, TRow, bool> _sameColumns;
    private readonly Func<TKey, bool>? _fixedValue;
    private readonly RowInserter _insert;
    private readonly RowInserter _update;
    private readonly RowInserter _delete;
    private int _generation;
    private int _inserted;
    private int _updated;
    private int _deleted;

    public ResidentTable(
        SqliteConnection connection, string table, int columns, Func<RowInserter, TRow, RowInserter> bind, Func<TRow, TRow, bool> sameColumns, Func<TKey, bool>? fixedValue = null)
    {
        Name = table;
        _bind = bind;
        _sameColumns = sameColumns;
        _fixedValue = fixedValue;
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
            if ((_fixedValue is null || !_fixedValue(key)) && !_sameColumns(entry.Row, row))
            {
                _bind(_update, row).Integer(entry.RowId).Execute();
                entry.Row = row;
                _updated++;
            }

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
