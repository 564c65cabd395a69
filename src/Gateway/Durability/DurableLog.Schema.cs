using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;

namespace DaemonEye.Gateway.Durability;

/// <summary>
/// The log's tables and their format version (<c>PRAGMA user_version</c>), and the one migration: a
/// log of the first format (one row per message) is rewritten, at the first start of an agent that
/// packs batches, into packed rows with its messages, sequences, times and consumers' positions
/// kept.
/// </summary>
/// <remarks>
/// One row of <c>batches</c> is one appended batch (one socket read's publishes to one topic, or one
/// publish from inside the agent): the sequence of its first message, its time, its topic, the end
/// offset of each message in <c>data</c> (<c>ends</c>: 32-bit integers, little-endian) and the messages'
/// Publish frames back to back (<c>data</c>). A message's sequence is the row's <c>seq</c> plus its
/// index, so positions stay per message while an append of 100 messages is one INSERT.
/// <c>state.sequence_floor</c> is the highest sequence ever removed, so that numbering continues
/// after retention has emptied the log.
/// </remarks>
public sealed partial class DurableLog
{
    /// <summary>This agent's format: 2, packed batches. 1 (or 0 with a <c>messages</c> table) was one row per message.</summary>
    internal const int FormatVersion = 2;

    /// <summary>Messages per row at most when a log of the first format is migrated.</summary>
    private const int MigrationRowMessages = 1000;

    private const string Tables = """
        CREATE TABLE IF NOT EXISTS batches (seq INTEGER PRIMARY KEY, count INTEGER NOT NULL, time INTEGER NOT NULL, topic TEXT NOT NULL, ends BLOB NOT NULL, data BLOB NOT NULL);
        CREATE INDEX IF NOT EXISTS batches_time ON batches (time);
        CREATE TABLE IF NOT EXISTS consumers (name TEXT PRIMARY KEY, pattern TEXT NOT NULL, acked INTEGER NOT NULL, created INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        """;

    /// <summary>Creates the tables of a new log, migrates one of the first format, and refuses one of a newer format.</summary>
    private void CreateOrMigrate()
    {
        var version = Scalar(_write, null, "PRAGMA user_version") ?? 0;
        if (version == FormatVersion)
        {
            return;
        }

        if (version > FormatVersion)
        {
            throw new InvalidOperationException(
                $"the durable log {Path} has format version {version}, which this daemoneye-agent (format {FormatVersion}) cannot read; run the agent that wrote it, or move {Directory} aside to start with an empty log");
        }

        using var transaction = _write.BeginTransaction();
        Execute(_write, transaction, Tables);
        var migrated = Scalar(_write, transaction, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'messages'") > 0
            ? MigrateMessages(transaction)
            : (long?)null;
        Execute(_write, transaction, $"PRAGMA user_version = {FormatVersion};");
        transaction.Commit();
        if (migrated is { } count)
        {
            LogMigrated(_logger, Path, count);
        }
    }

    /// <summary>Rewrites the first format's <c>messages</c> table into packed rows (consecutive messages of one topic and time share a row) and drops it.</summary>
    private long MigrateMessages(SqliteTransaction transaction)
    {
        using var insert = new BatchInsert(_write);
        var data = new System.Buffers.ArrayBufferWriter<byte>();
        var ends = new List<int>();
        long first = 0, time = 0, expected = 0, migrated = 0;
        var topic = string.Empty;

        void Flush()
        {
            if (ends.Count > 0)
            {
                insert.Execute(first, topic, time, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(ends), data.WrittenSpan);
                migrated += ends.Count;
                ends.Clear();
                data.ResetWrittenCount();
            }
        }

        using (var read = _write.CreateCommand())
        {
            read.Transaction = transaction;
            read.CommandText = "SELECT seq, time, topic, publish FROM messages ORDER BY seq";
            using var rows = read.ExecuteReader();
            while (rows.Read())
            {
                var (seq, at, on) = (rows.GetInt64(0), rows.GetInt64(1), rows.GetString(2));
                if (ends.Count == MigrationRowMessages || seq != expected || at != time || on != topic)
                {
                    Flush();
                    (first, time, topic) = (seq, at, on);
                }

                System.Buffers.BuffersExtensions.Write(data, (byte[])rows.GetValue(3));
                ends.Add(data.WrittenCount);
                expected = seq + 1;
            }
        }

        Flush();

        // The first format numbered with AUTOINCREMENT: its counter is the highest sequence ever given.
        var highest = Scalar(_write, transaction, "SELECT seq FROM sqlite_sequence WHERE name = 'messages'") ?? 0;
        Execute(_write, transaction, $"""
            INSERT INTO state (name, value) VALUES ('sequence_floor', {highest}) ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value);
            DROP TABLE messages;
            """);
        return migrated;
    }

    [LoggerMessage(EventId = 7006, Level = LogLevel.Information, Message = "Durable log {Path}: migrated {Messages} messages from the one-row-per-message format to packed batches")]
    private static partial void LogMigrated(ILogger logger, string path, long messages);
}
