using System.Runtime.InteropServices;
using Microsoft.Data.Sqlite;
using SQLitePCL;

namespace DaemonEye.Gateway.Durability;

public sealed partial class DurableLog
{
    /// <summary>
    /// The prepared INSERT of one packed row (DurableLog.Schema.cs), bound and stepped through
    /// SQLite's own API: the batch's Publish frames go in as one blob straight from the publisher's
    /// buffer and their end offsets as another, with no managed copy and no parameter objects. A row
    /// per message cost a B-tree cell, a time-index entry and a bound blob per message
    /// (docs/ARCHITECTURE.md, "The durable log"); this is one of each per batch.
    /// </summary>
    /// <remarks>
    /// Run outside an explicit transaction the one statement is its own transaction: atomic, and on
    /// failure (<c>SQLITE_FULL</c>, an I/O error) rolled back by SQLite whole. A group commit
    /// (DurableLog.Append.cs) wraps several rows in <see cref="Begin"/> and <see cref="Commit"/>,
    /// prepared once like the INSERT.
    /// </remarks>
    private sealed class BatchInsert : IDisposable
    {
        private const int SqliteOk = 0;
        private const int SqliteDone = 101;

        private readonly sqlite3 _database;
        private readonly sqlite3_stmt _statement;
        private readonly sqlite3_stmt _begin;
        private readonly sqlite3_stmt _commit;
        private readonly sqlite3_stmt _rollback;

        public BatchInsert(SqliteConnection connection)
        {
            _database = connection.Handle ?? throw new InvalidOperationException("the connection is not open");
            Check(raw.sqlite3_prepare_v2(_database, "INSERT INTO batches (seq, count, time, topic, ends, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)", out _statement));
            Check(raw.sqlite3_prepare_v2(_database, "BEGIN IMMEDIATE", out _begin));
            Check(raw.sqlite3_prepare_v2(_database, "COMMIT", out _commit));
            Check(raw.sqlite3_prepare_v2(_database, "ROLLBACK", out _rollback));
        }

        /// <summary>Starts a transaction holding the write lock (SQLite's busy timeout waits for a checkpoint that holds it).</summary>
        public void Begin() => Step(_begin);

        public void Commit() => Step(_commit);

        /// <summary>Rolls back the open transaction, if SQLite has not already (it may after SQLITE_FULL or an I/O error).</summary>
        public void RollbackIfOpen()
        {
            if (raw.sqlite3_get_autocommit(_database) == 0)
            {
                raw.sqlite3_step(_rollback);
                raw.sqlite3_reset(_rollback);
            }
        }

        /// <summary>Inserts one row: messages <paramref name="first"/> .. + ends.Length, <paramref name="data"/> holding their frames back to back.</summary>
        /// <exception cref="SqliteException">SQLite refused the row; nothing of it was written.</exception>
        public void Execute(long first, string topic, long time, ReadOnlySpan<int> ends, ReadOnlySpan<byte> data)
        {
            try
            {
                Check(raw.sqlite3_bind_int64(_statement, 1, first));
                Check(raw.sqlite3_bind_int(_statement, 2, ends.Length));
                Check(raw.sqlite3_bind_int64(_statement, 3, time));
                Check(raw.sqlite3_bind_text16(_statement, 4, topic.AsSpan()));
                Check(BindBlob(5, MemoryMarshal.AsBytes(ends)));
                Check(BindBlob(6, data));
                var rc = raw.sqlite3_step(_statement);
                if (rc != SqliteDone)
                {
                    throw Error(rc);
                }
            }
            finally
            {
                raw.sqlite3_reset(_statement);
            }
        }

        public void Dispose()
        {
            _statement.Dispose();
            _begin.Dispose();
            _commit.Dispose();
            _rollback.Dispose();
        }

        private void Step(sqlite3_stmt statement)
        {
            try
            {
                var rc = raw.sqlite3_step(statement);
                if (rc != SqliteDone)
                {
                    throw Error(rc);
                }
            }
            finally
            {
                raw.sqlite3_reset(statement);
            }
        }

        /// <summary>An empty span reaches SQLite as a null pointer, which binds NULL: bind an empty blob as such.</summary>
        private int BindBlob(int index, ReadOnlySpan<byte> blob) =>
            blob.IsEmpty ? raw.sqlite3_bind_zeroblob(_statement, index, 0) : raw.sqlite3_bind_blob(_statement, index, blob);

        private void Check(int rc)
        {
            if (rc != SqliteOk)
            {
                throw Error(rc);
            }
        }

        private SqliteException Error(int rc) => new(raw.sqlite3_errmsg(_database).utf8_to_string(), rc);
    }
}
