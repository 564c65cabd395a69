using Microsoft.Data.Sqlite;
using SQLitePCL;

namespace DaemonEye.Coordination;

/// <summary>
/// One prepared statement that writes a row (an INSERT; also the UPDATE and DELETE of the resident
/// tables, <see cref="ResidentTable{TKey, TRow}"/>), bound and stepped through SQLite's own API: values are bound in column
/// order (<c>Text(..).Integer(..)...Insert()</c>) with no parameter objects and no boxing, and strings
/// go in as UTF-16 for SQLite to convert (no managed UTF-8 copy). Loading 100,000 file events is the
/// bulk of an evaluation; through <see cref="SqliteCommand"/> each row cost a parameter object per
/// column and a boxed value per number. <see cref="Insert"/> checks that every parameter was bound.
/// </summary>
internal sealed class RowInserter : IDisposable
{
    private const int SqliteOk = 0;
    private const int SqliteDone = 101;

    private readonly sqlite3 _database;
    private readonly sqlite3_stmt _statement;
    private readonly int _parameters;
    private int _bound;

    public RowInserter(SqliteConnection connection, string sql)
    {
        ArgumentNullException.ThrowIfNull(connection);
        _database = connection.Handle ?? throw new InvalidOperationException("the connection is not open");
        Check(raw.sqlite3_prepare_v2(_database, sql, out _statement));
        _parameters = raw.sqlite3_bind_parameter_count(_statement);
    }

    public RowInserter Text(string value)
    {
        // An empty span reaches SQLite as a null pointer, which binds NULL: bind '' as a (terminated) UTF-8 string.
        Check(value.Length == 0 ? raw.sqlite3_bind_text(_statement, ++_bound, string.Empty) : raw.sqlite3_bind_text16(_statement, ++_bound, value.AsSpan()));
        return this;
    }

    public RowInserter Integer(long value)
    {
        Check(raw.sqlite3_bind_int64(_statement, ++_bound, value));
        return this;
    }

    public RowInserter Integer(long? value) => value is { } v ? Integer(v) : Null();

    public RowInserter Flag(bool value) => Integer(value ? 1 : 0);

    public RowInserter Real(double value)
    {
        Check(raw.sqlite3_bind_double(_statement, ++_bound, value));
        return this;
    }

    public RowInserter Null()
    {
        Check(raw.sqlite3_bind_null(_statement, ++_bound));
        return this;
    }

    /// <summary>The rowid of the connection's most recent successful INSERT.</summary>
    public long LastInsertRowId => raw.sqlite3_last_insert_rowid(_database);

    /// <summary>Runs the bound UPDATE or DELETE; false when it changed no row.</summary>
    public bool Execute() => Insert();

    /// <summary>Runs the bound row; false when no row was inserted (an <c>INSERT OR IGNORE</c> that ignored it).</summary>
    public bool Insert()
    {
        if (_bound != _parameters)
        {
            var bound = _bound;
            _bound = 0;
            raw.sqlite3_clear_bindings(_statement);
            throw new InvalidOperationException($"{bound} value(s) bound for {_parameters} parameter(s)");
        }

        _bound = 0;
        var rc = raw.sqlite3_step(_statement);
        raw.sqlite3_reset(_statement);
        if (rc != SqliteDone)
        {
            throw new SqliteException(raw.sqlite3_errmsg(_database).utf8_to_string(), rc);
        }

        return raw.sqlite3_changes(_database) > 0;
    }

    public void Dispose() => _statement.Dispose();

    private void Check(int rc)
    {
        if (rc != SqliteOk)
        {
            throw new SqliteException(raw.sqlite3_errmsg(_database).utf8_to_string(), rc);
        }
    }
}
