using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;
using SQLitePCL;

namespace DaemonEye.Gateway.Durability;

/// <summary>When the durable log's WAL is checkpointed, and how far it may grow.</summary>
/// <param name="Pages">About this many WAL pages written since the last checkpoint wake the checkpointer (SQLite's own automatic checkpoint is at 1,000).</param>
/// <param name="Interval">After a write, a checkpoint follows within this time even below <paramref name="Pages"/>; one more round after that, with nothing written meanwhile, truncates the WAL.</param>
/// <param name="BoundFrames">A WAL longer than this after a passive checkpoint is caught up with the writer held, so that it starts over (see <see cref="WalCheckpointer"/>).</param>
/// <param name="KeptFrames">The WAL file is kept at up to this many frames when it starts over, so that appends overwrite it instead of extending it (SQLite's journal_size_limit).</param>
internal sealed record WalCheckpointPolicy(long Pages, TimeSpan Interval, long BoundFrames, long KeptFrames)
{
    /// <summary>
    /// A checkpoint per ~4 MiB of WAL, and 10 s after a write at the latest; about 64 MiB of WAL
    /// (4 KiB pages) between starts over under a steady stream of commits (at 10,000 single-message
    /// commits a second, two to five pages each, a catch-up about every second), the file kept at
    /// that size plus room for what lands before a catch-up, so that starting over does not cut it.
    /// Not sooner when idle: the first commit into a WAL that starts over (or was truncated) fsyncs
    /// its header, so a log with an alert every few seconds would pay an fsync per alert.
    /// </summary>
    public static WalCheckpointPolicy Default { get; } = new(1000, TimeSpan.FromSeconds(10), 16_384, 20_480);
}

/// <summary>What one round of the checkpointer did.</summary>
/// <param name="Mode">PASSIVE, CATCH-UP (passive, with the writer held), TRUNCATE, or none.</param>
/// <param name="Code">SQLite's result (0: done; 5: busy, a reader or the writer was in the way).</param>
/// <param name="LogFrames">Frames in the WAL after it.</param>
/// <param name="CheckpointedFrames">Of those, frames copied into the database.</param>
internal readonly record struct WalCheckpoint(string Mode, int Code, int LogFrames, int CheckpointedFrames);

/// <summary>
/// Checkpoints the durable log's write-ahead log on a thread and connection of its own, off the
/// append path. The writer connection has SQLite's automatic checkpoint off: left on, every
/// 1,000th page's commit would copy the WAL into the database and fsync both, inline, in some
/// publisher's append (docs/benchmarks.md, "Durable log"). Here a <c>PASSIVE</c> checkpoint, which
/// never blocks the writer nor waits for readers, runs when the writer has written about
/// <see cref="WalCheckpointPolicy.Pages"/> pages or <see cref="WalCheckpointPolicy.Interval"/>
/// after a write; once the log is idle for a round, a <c>TRUNCATE</c> checkpoint empties the WAL
/// file (it takes the write lock, so only when idle, and it gives up at once if a reader or the
/// writer is in the way).
/// </summary>
/// <remarks>
/// The writer starts the WAL over by itself at its first commit after a checkpoint has copied all
/// of it, overwriting the file from the start (up to <see cref="WalCheckpointPolicy.KeptFrames"/>
/// are kept; SQLite syncs the WAL's new header then, one fsync per start over). Under a steady
/// stream of commits a passive checkpoint never copies all of it (commits land while it syncs), so
/// once the WAL passes <see cref="WalCheckpointPolicy.BoundFrames"/> one passive checkpoint runs with
/// the writer held (the log's gate: appends queue meanwhile, and are committed as one group after
/// it): a pause of a checkpoint's syncs, once per bound's worth of WAL, instead of one inline in
/// every 1,000th page's commit. <see cref="Written"/> is called by the writer after each commit and
/// costs two interlocked operations. Thread-safe.
/// </remarks>
internal sealed partial class WalCheckpointer : IDisposable
{
    private const int SqliteOk = 0;
    private const int SqliteBusy = 5;
    private const int Passive = 0;
    private const int Truncate = 3;

    private readonly SqliteConnection _connection;
    private readonly sqlite3 _database;
    private readonly WalCheckpointPolicy _policy;
    private readonly ILogger _logger;
    private readonly Lock _writerGate;
    private readonly ITimer _timer;
    private readonly SemaphoreSlim _signal = new(0);
    private readonly Thread _thread;
    private long _pages; // estimated pages written since the last wake by size
    private int _written; // 1: something was committed since the last round
    private int _signalled;
    private int _timerArmed;
    private int _lastLogFrames = -1; // -1: not known yet (start-up), else after the last round
    private long _rounds;
    private long _catchUps;
    private volatile bool _stopping;

    /// <summary>Opens its connection and starts its thread; <paramref name="writerGate"/> is the lock the log's writer commits under, held for a catch-up.</summary>
    public WalCheckpointer(string connectionString, bool fullSync, long pageSize, WalCheckpointPolicy policy, Lock writerGate, TimeProvider time, ILogger logger)
    {
        _policy = policy;
        _writerGate = writerGate;
        _logger = logger;
        _connection = new SqliteConnection(connectionString);
        _connection.Open();
        _database = _connection.Handle ?? throw new InvalidOperationException("the connection is not open");
        using (var setup = _connection.CreateCommand())
        {
            // The checkpoint's syncs follow this connection's setting: the same as the writer's.
            setup.CommandText = $"""
                PRAGMA synchronous = {(fullSync ? "FULL" : "NORMAL")};
                PRAGMA journal_size_limit = {KeptBytes(policy.KeptFrames, pageSize)};
                """;
            setup.ExecuteNonQuery();
        }

        _timer = time.CreateTimer(static state => ((WalCheckpointer)state!).OnTimer(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        _thread = new Thread(Run) { IsBackground = true, Name = "DaemonEye durable checkpoint" };
        _thread.Start();
    }

    /// <summary>Checkpoint rounds run since start-up.</summary>
    public long Rounds => Interlocked.Read(ref _rounds);

    /// <summary>Checkpoints run with the writer held because the WAL passed <see cref="WalCheckpointPolicy.BoundFrames"/>.</summary>
    public long CatchUps => Interlocked.Read(ref _catchUps);

    /// <summary>Before each round, on the checkpointer's thread (tests hold it here).</summary>
    public Action? RoundStarting { get; set; }

    /// <summary>After each round, with what it did (tests).</summary>
    public Action<WalCheckpoint>? RoundFinished { get; set; }

    /// <summary>
    /// The WAL file size that <c>journal_size_limit</c> keeps: a header and whole frames, so that a
    /// WAL cut to it still passes <see cref="WalInspection"/> as untorn.
    /// </summary>
    public static long KeptBytes(long frames, long pageSize) => 32 + (frames * (24 + pageSize));

    /// <summary>The writer committed about <paramref name="pages"/> pages (under the log's gate).</summary>
    public void Written(long pages)
    {
        Volatile.Write(ref _written, 1);
        if (Interlocked.Add(ref _pages, pages) >= _policy.Pages)
        {
            Interlocked.Exchange(ref _pages, 0);
            Wake();
        }
        else
        {
            ArmTimer();
        }
    }

    public void Dispose()
    {
        _timer.Dispose();
        _stopping = true;
        _signal.Release();
        _thread.Join();

        // Not _signal: a timer callback already under way may still release it (SemaphoreSlim holds nothing to free unless its wait handle was asked for).
        _connection.Dispose();
    }

    private void ArmTimer()
    {
        if (Interlocked.CompareExchange(ref _timerArmed, 1, 0) == 0)
        {
            _timer.Change(_policy.Interval, Timeout.InfiniteTimeSpan);
        }
    }

    private void OnTimer()
    {
        Volatile.Write(ref _timerArmed, 0);
        Wake();
    }

    private void Wake()
    {
        if (Interlocked.Exchange(ref _signalled, 1) == 0)
        {
            _signal.Release();
        }
    }

    private void Run()
    {
        while (true)
        {
            _signal.Wait();
            if (_stopping)
            {
                return;
            }

            Volatile.Write(ref _signalled, 0);
            RoundStarting?.Invoke();
            var done = Round();
            Interlocked.Increment(ref _rounds);
            RoundFinished?.Invoke(done);
        }
    }

    /// <summary>One round: PASSIVE after writes (caught up with the writer held past the bound), TRUNCATE once idle.</summary>
    private WalCheckpoint Round()
    {
        if (Interlocked.Exchange(ref _written, 0) == 1 || _lastLogFrames < 0)
        {
            var passive = Checkpoint("PASSIVE", Passive, 0);
            if (passive.LogFrames > _policy.BoundFrames)
            {
                // Most of it is copied now; the rest, with no commit landing meanwhile, lets the next commit start the WAL over.
                lock (_writerGate)
                {
                    passive = Checkpoint("CATCH-UP", Passive, 0);
                }

                Interlocked.Increment(ref _catchUps);
            }

            // Come back once more: to catch up, or to truncate the WAL of a log gone idle.
            ArmTimer();
            return passive;
        }

        if (_lastLogFrames == 0)
        {
            return new WalCheckpoint("none", SqliteOk, 0, 0);
        }

        var truncate = Checkpoint("TRUNCATE", Truncate, 0);
        if (truncate.Code != SqliteOk)
        {
            ArmTimer(); // a reader or a new write was in the way: next round
        }

        return truncate;
    }

    private WalCheckpoint Checkpoint(string name, int mode, int busyMilliseconds)
    {
        raw.sqlite3_busy_timeout(_database, busyMilliseconds);
        var rc = raw.sqlite3_wal_checkpoint_v2(_database, "main", mode, out var log, out var copied);
        if (rc != SqliteOk && rc != SqliteBusy)
        {
            LogCheckpointFailed(_logger, name, rc, raw.sqlite3_errmsg(_database).utf8_to_string());
        }

        _lastLogFrames = rc == SqliteOk || log >= 0 ? Math.Max(log, 0) : _lastLogFrames;
        return new WalCheckpoint(name, rc, log, copied);
    }

    [LoggerMessage(EventId = 7007, Level = LogLevel.Warning, Message = "Durable log: {Mode} checkpoint failed: SQLite error {Code}: {Detail}; the WAL grows until a later one succeeds")]
    private static partial void LogCheckpointFailed(ILogger logger, string mode, int code, string detail);
}
