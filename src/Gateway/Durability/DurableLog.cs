using DaemonEye.Configuration;
using DaemonEye.Topics;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;

namespace DaemonEye.Gateway.Durability;

/// <summary>
/// The agent's durable log: messages of the durable topics (durability.topics), appended before
/// they are delivered, numbered by one log sequence that only grows, and the durable consumers'
/// acknowledged positions. One SQLite database in WAL mode (docs/ARCHITECTURE.md, "The durable
/// log", says why SQLite and not FasterLog) with one row per appended batch (DurableLog.Schema.cs);
/// SQLite's journal makes every append and ack atomic, so a crash at any moment leaves the log as
/// it was after some whole batch.
/// </summary>
/// <remarks>
/// Appends and acks share one writer connection under a lock: appends by group commit (one
/// transaction for whatever batches are pending, DurableLog.Append.cs), acks one transaction each.
/// The WAL is checkpointed off that path, by a <see cref="WalCheckpointer"/> with its own
/// connection. Every reader (<see cref="DurableLogReader"/>) has its own connection and sees
/// committed batches only. Thread-safe.
/// </remarks>
public sealed partial class DurableLog : IDisposable
{
    public const string FileName = "durable.db";

    /// <summary>The file an agent holds locked (flock) while it owns the log's directory.</summary>
    public const string LockFileName = "durable.lock";

    /// <summary>How long a commit waits for a checkpoint that holds the write lock (an idle TRUNCATE, a bounding RESTART) before it is refused.</summary>
    private const int WriterBusyMilliseconds = 5000;

    private readonly Lock _gate = new();
    private readonly FileStream _ownership;
    private readonly SqliteConnection _write;
    private readonly BatchInsert _insert;
    private readonly string[] _patterns;
    private readonly string _connectionString;
    private readonly TimeProvider _clock;
    private readonly ILogger _logger;
    private readonly WalCheckpointer? _checkpointer;
    private TaskCompletionSource _appended = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private ulong _last;
    private ulong _first;
    private long _messages;
    private long _bytes;
    private long _refused;
    private long _lastRefusalTicks; // UTC ticks of the last refused batch, 0 if none
    private bool _disposed;

    public DurableLog(DurabilityOptions options, ILogger<DurableLog> logger, TimeProvider? time = null)
        : this(options, logger, time, WalCheckpointPolicy.Default)
    {
    }

    internal DurableLog(DurabilityOptions options, ILogger<DurableLog> logger, TimeProvider? time, WalCheckpointPolicy checkpoints)
    {
        if (!BitConverter.IsLittleEndian)
        {
            // A row's end offsets are stored as the host's 32-bit integers (DurableLog.Schema.cs).
            throw new PlatformNotSupportedException("the durable log's format is little-endian");
        }

        Options = options;
        _logger = logger;
        _clock = time ?? TimeProvider.System;
        _patterns = [.. options.EffectiveTopics];
        Directory = options.ResolvedDirectory();
        System.IO.Directory.CreateDirectory(Directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        Path = System.IO.Path.Combine(Directory, FileName);
        _ownership = TakeOwnership(Directory);

        // Before SQLite opens the file (and its recovery silently drops a torn write): see what the WAL ends in.
        Torn = WalInspection.Inspect(Path + "-wal");

        _connectionString = new SqliteConnectionStringBuilder { DataSource = Path, Mode = SqliteOpenMode.ReadWriteCreate, Pooling = false }.ToString();
        _write = new SqliteConnection(_connectionString);
        try
        {
            _write.Open();

            // Checkpoints are the checkpointer's (off the append path); the writer waits out one that holds the write lock.
            Execute(_write, null, $"""
                PRAGMA journal_mode = WAL;
                PRAGMA synchronous = {(options.SyncEveryBatch ? "FULL" : "NORMAL")};
                PRAGMA wal_autocheckpoint = 0;
                PRAGMA busy_timeout = {WriterBusyMilliseconds};
                """);
            var pageSize = Scalar(_write, null, "PRAGMA page_size") ?? 4096;
            Execute(_write, null, $"PRAGMA journal_size_limit = {WalCheckpointer.KeptBytes(checkpoints.KeptFrames, pageSize)};");
            if (Torn is not null)
            {
                // SQLite's recovery ignored the partial frame (and any batch it belonged to); fold the WAL into the database and truncate it.
                Execute(_write, null, "PRAGMA wal_checkpoint(TRUNCATE);");
                TornTails = 1;
            }

            CreateOrMigrate();
            ReadTotals();
            _insert = new BatchInsert(_write);
            _checkpointer = new WalCheckpointer(_connectionString, options.SyncEveryBatch, pageSize, checkpoints, _gate, _clock, _logger);
            _checkpointer.Written(0); // what start-up left in the WAL (a migration, a crash's batches) is checkpointed soon
        }
        catch
        {
            // A log this agent cannot open (a newer format, an unreadable file) is left to the next agent, unlocked.
            _insert?.Dispose();
            _write.Dispose();
            _ownership.Dispose();
            throw;
        }

        if (Torn is { } t)
        {
            LogTornTail(_logger, Path + "-wal", t.PartialBytes, t.FrameSize, _last);
        }

        var patterns = string.Join(", ", _patterns);
        LogOpened(_logger, Path, _messages, _bytes, _first, _last, patterns, options.Fsync);
    }

    public DurabilityOptions Options { get; }

    public string Directory { get; }

    /// <summary>The database file.</summary>
    public string Path { get; }

    /// <summary>The torn final write found at start-up, if any.</summary>
    public WalInspection? Torn { get; }

    /// <summary>Torn final writes found and truncated at start-up (0 or 1).</summary>
    public long TornTails { get; }

    /// <summary>The configured durable topic patterns.</summary>
    public IReadOnlyList<string> Patterns => _patterns;

    public ulong LastSequence => Volatile.Read(ref _last);

    /// <summary>The background checkpointer (tests watch and hold its rounds).</summary>
    internal WalCheckpointer Checkpointer => _checkpointer!;

    /// <summary>Publishes refused because the log could not take them, since start-up.</summary>
    public long Refused => Interlocked.Read(ref _refused);

    /// <summary>When the log last refused a batch, if it ever did since start-up.</summary>
    public DateTimeOffset? LastRefusal => Volatile.Read(ref _lastRefusalTicks) is var ticks and > 0 ? new DateTimeOffset(ticks, TimeSpan.Zero) : null;

    /// <summary>True when messages on <paramref name="topic"/> are logged.</summary>
    public bool IsDurable(string topic)
    {
        foreach (var pattern in _patterns)
        {
            if (TopicRules.Matches(pattern, topic))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Completes once the log's last sequence is past <paramref name="after"/>.</summary>
    public Task WaitForAppendAsync(ulong after, CancellationToken cancellationToken)
    {
        Task appended;
        lock (_gate)
        {
            if (_last > after)
            {
                return Task.CompletedTask;
            }

            appended = _appended.Task;
        }

        return appended.WaitAsync(cancellationToken);
    }

    /// <summary>A reader with its own connection (dispose it).</summary>
    public DurableLogReader OpenReader() => new(_connectionString);

    public DurableLogStats Stats()
    {
        lock (_gate)
        {
            return new DurableLogStats(_first, _last, _messages, _bytes, Refused, TornTails);
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
        }

        // Its thread may be in a checkpoint: it finishes that, then stops; the final one below is the writer's.
        _checkpointer?.Dispose();
        lock (_gate)
        {
            try
            {
                Execute(_write, null, "PRAGMA wal_checkpoint(TRUNCATE);");
            }
            catch (SqliteException)
            {
                // The next start recovers from the WAL.
            }

            _insert.Dispose();

            _write.Dispose();
            _ownership.Dispose();
        }
    }

    /// <summary>
    /// Locks the directory's lock file for this process (an exclusive flock, released by the kernel
    /// when the process ends, even by kill -9). Two agents appending to one log would each number
    /// messages from their own last sequence and refuse each other's batches; the second is stopped
    /// at start-up instead, naming the directory and the key that separates them.
    /// </summary>
    private static FileStream TakeOwnership(string directory)
    {
        var path = System.IO.Path.Combine(directory, LockFileName);
        try
        {
            // FileShare.None is an exclusive, non-blocking flock on Linux.
            return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e)
        {
            throw new InvalidOperationException(
                $"the durable log directory {directory} is in use by another daemoneye-agent ({path} is locked: {e.Message}); give each agent its own durability.directory (or STATE_DIRECTORY), or stop the other agent", e);
        }
    }

    /// <summary>Caps the database at <paramref name="pages"/> pages (SQLite's max_page_count): a full disk, for tests.</summary>
    internal void LimitPages(long pages)
    {
        lock (_gate)
        {
            Execute(_write, null, $"PRAGMA max_page_count = {pages};");
        }
    }

    internal static long UnixNanos(DateTimeOffset time) => (time.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) * 100;

    /// <summary>The log's extent and size as stored (at start-up).</summary>
    private void ReadTotals()
    {
        using var totals = _write.CreateCommand();
        totals.CommandText = "SELECT coalesce(sum(count), 0), coalesce(sum(length(data)), 0), coalesce(min(seq), 0), coalesce(max(seq + count - 1), 0) FROM batches";
        using (var row = totals.ExecuteReader())
        {
            row.Read();
            (_messages, _bytes, _first, _last) = (row.GetInt64(0), row.GetInt64(1), (ulong)row.GetInt64(2), (ulong)row.GetInt64(3));
        }

        // Numbering continues above every sequence ever given, also when retention has emptied the log.
        _last = Math.Max(_last, (ulong)(Scalar(_write, null, "SELECT value FROM state WHERE name = 'sequence_floor'") ?? 0L));
    }

    private static void Execute(SqliteConnection connection, SqliteTransaction? transaction, string sql)
    {
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    private static long? Scalar(SqliteConnection connection, SqliteTransaction? transaction, string sql)
    {
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = sql;
        return command.ExecuteScalar() is long result ? result : null;
    }

    [LoggerMessage(EventId = 7001, Level = LogLevel.Information, Message = "Durable log {Path}: {Messages} messages, {Bytes} bytes, sequences {First}..{Last}; durable topics {Patterns}; fsync {Fsync}")]
    private static partial void LogOpened(ILogger logger, string path, long messages, long bytes, ulong first, ulong last, string patterns, string fsync);

    [LoggerMessage(EventId = 7002, Level = LogLevel.Warning, Message = "Durable log: torn final record in {Wal}: {PartialBytes} bytes after the last whole transaction ({FrameSize}-byte frames), dropped and truncated; the batch they belonged to is gone, the log ends at sequence {Last}")]
    private static partial void LogTornTail(ILogger logger, string wal, long partialBytes, long frameSize, ulong last);

    [LoggerMessage(EventId = 7003, Level = LogLevel.Error, Message = "Durable log refused {Count} messages on {Topic}: SQLite error {Code}: {Detail}")]
    private static partial void LogAppendFailed(ILogger logger, string topic, int count, int code, string detail);
}

/// <summary>The durable log at one moment.</summary>
public readonly record struct DurableLogStats(ulong FirstSequence, ulong LastSequence, long Messages, long Bytes, long Refused, long TornTails);

/// <summary>The durable log could not take a batch; nothing of it was logged.</summary>
public sealed class DurableLogUnavailableException(string message, Exception inner) : Exception(message, inner);
