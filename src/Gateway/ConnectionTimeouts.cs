using System.Collections.Concurrent;
using DaemonEye.Configuration;
using DaemonEye.Logging;
using Microsoft.Extensions.Logging;

namespace DaemonEye.Gateway;

/// <summary>Why a connection was cut for time.</summary>
internal enum ConnectionTimeout : byte
{
    None,

    /// <summary>No complete Hello within <c>broker.handshake_timeout_seconds</c> of the accept.</summary>
    Handshake,

    /// <summary>A frame begun and not finished within <c>broker.frame_timeout_seconds</c>.</summary>
    Frame,

    /// <summary>Nothing received for <c>broker.idle_timeout_seconds</c> by a connection holding no subscription.</summary>
    Idle,
}

/// <summary>The bus connections' timeouts (<c>broker.*_timeout_seconds</c>); <see cref="Idle"/> zero when off.</summary>
internal sealed record TimeoutSettings(TimeSpan Handshake, TimeSpan Frame, TimeSpan Idle)
{
    public static TimeoutSettings From(BrokerOptions options) => new(options.HandshakeTimeout, options.FrameTimeout, options.IdleTimeout);

    /// <summary>How often the sweeper looks: a quarter of the shortest timeout, within 10 ms to 1 s (so a cut comes at most that late).</summary>
    public TimeSpan SweepPeriod
    {
        get
        {
            var shortest = Handshake < Frame ? Handshake : Frame;
            if (Idle > TimeSpan.Zero && Idle < shortest)
            {
                shortest = Idle;
            }

            var period = shortest / 4;
            return period < TimeSpan.FromMilliseconds(10) ? TimeSpan.FromMilliseconds(10) : period > TimeSpan.FromSeconds(1) ? TimeSpan.FromSeconds(1) : period;
        }
    }
}

/// <summary>
/// One connection's read timing. The read loop stamps it (no locks: a few field writes per socket
/// read) and says when it waits on the socket; the sweeper judges it and may cut the wait. A timeout
/// runs only while the connection waits for the peer: time the agent spends on what it already read
/// (grain calls, back-pressure) never counts against the peer.
/// </summary>
internal sealed class ReadDeadlines(TimeProvider time, TimeoutSettings settings, long acceptedAt)
{
    private const int Busy = 0;
    private const int Waiting = 1;
    private const int Cut = 2;
    private const long NoPartialFrame = long.MinValue;
    private readonly long _acceptedAt = acceptedAt;
    private int _state = Busy;
    private long _lastFrameAt = acceptedAt;
    private long _partialSince = NoPartialFrame;
    private volatile bool _welcomed;
    private ConnectionTimeout _cutFor;

    public TimeoutSettings Settings => settings;

    /// <summary>The timeout that cut the wait (valid once <see cref="EndWait"/> returned false).</summary>
    public ConnectionTimeout CutFor => _cutFor;

    /// <summary>The Hello was accepted: the handshake timeout no longer applies.</summary>
    public void Welcomed() => _welcomed = true;

    /// <summary>
    /// The read loop is about to wait for the socket, having handled a read that completed frames
    /// (<paramref name="completedFrames"/>) and left part of one (<paramref name="partialFrame"/>).
    /// Returns a timeout already due (the loop then cuts without waiting), else None.
    /// </summary>
    public ConnectionTimeout BeginWait(bool completedFrames, bool partialFrame)
    {
        var now = time.GetTimestamp();
        if (completedFrames)
        {
            Volatile.Write(ref _lastFrameAt, now);
        }

        // A frame's clock starts once the read that began it is handled, and runs across the reads that add to it.
        var partialSince = Volatile.Read(ref _partialSince);
        Volatile.Write(ref _partialSince, !partialFrame ? NoPartialFrame : completedFrames || partialSince == NoPartialFrame ? now : partialSince);
        // Idle is left to the sweeper, which knows whether the connection holds subscriptions.
        var due = Due(now, holdsSubscriptions: true);
        if (due != ConnectionTimeout.None)
        {
            _cutFor = due;
            Volatile.Write(ref _state, Cut);
            return due;
        }

        Volatile.Write(ref _state, Waiting);
        return ConnectionTimeout.None;
    }

    /// <summary>The read loop's wait ended; false when the sweeper cut it meanwhile (see <see cref="CutFor"/>).</summary>
    public bool EndWait() => Interlocked.Exchange(ref _state, Busy) != Cut;

    /// <summary>The timeout due at <paramref name="now"/>, judged from the stamps alone.</summary>
    public ConnectionTimeout Due(long now, bool holdsSubscriptions)
    {
        if (!_welcomed)
        {
            return time.GetElapsedTime(_acceptedAt, now) >= settings.Handshake ? ConnectionTimeout.Handshake : ConnectionTimeout.None;
        }

        var partialSince = Volatile.Read(ref _partialSince);
        if (partialSince != NoPartialFrame)
        {
            return time.GetElapsedTime(partialSince, now) >= settings.Frame ? ConnectionTimeout.Frame : ConnectionTimeout.None;
        }

        return settings.Idle > TimeSpan.Zero && !holdsSubscriptions && time.GetElapsedTime(Volatile.Read(ref _lastFrameAt), now) >= settings.Idle
            ? ConnectionTimeout.Idle
            : ConnectionTimeout.None;
    }

    /// <summary>The sweeper: cuts the connection's wait when a timeout is due and it is waiting on the peer. True: cancel the pending read.</summary>
    public bool TryCut(long now, bool holdsSubscriptions)
    {
        if (Volatile.Read(ref _state) != Waiting)
        {
            return false;
        }

        var due = Due(now, holdsSubscriptions);
        if (due == ConnectionTimeout.None)
        {
            return false;
        }

        _cutFor = due;
        return Interlocked.CompareExchange(ref _state, Cut, Waiting) == Waiting;
    }

    /// <summary>How long the frame being received has been pending (zero when none).</summary>
    public TimeSpan PartialFrameAge(long now)
    {
        var since = Volatile.Read(ref _partialSince);
        return since == NoPartialFrame ? TimeSpan.Zero : time.GetElapsedTime(since, now);
    }
}

/// <summary>A connection the sweeper checks.</summary>
internal interface ITimedConnection
{
    long Id { get; }

    /// <summary>Cuts the connection if one of its timeouts is due at <paramref name="now"/> (a <see cref="TimeProvider"/> timestamp).</summary>
    void CheckTimeouts(long now);
}

/// <summary>
/// What the bus listener's connections share: their timeouts, checked by one sweeper timer for all
/// of them (a per-connection timer would be re-armed on every read), and one budget for the warnings
/// that every connection writes at most once (refused on accept, cut for time, a fatal protocol
/// error), so a flood of connections cannot flood the log; what it suppresses is counted and the
/// count logged when its window ends.
/// </summary>
internal sealed partial class ConnectionGuard : IDisposable
{
    /// <summary>Listener-wide: at most this many connection warnings per <see cref="WarningWindow"/>.</summary>
    public const int WarningsPerWindow = 20;

    /// <summary>Per connection: at most this many warning and error lines per <see cref="WarningWindow"/>.</summary>
    public const int ConnectionWarningsPerWindow = 10;

    public static readonly TimeSpan WarningWindow = TimeSpan.FromSeconds(10);

    private readonly ConcurrentDictionary<long, ITimedConnection> _connections = new();
    private readonly ILogger _logger;
    private readonly Lock _sweeping = new();
    private ITimer? _timer;

    public ConnectionGuard(TimeoutSettings settings, TimeProvider time, ILogger logger)
    {
        Settings = settings;
        Time = time;
        _logger = logger;
        Warnings = new LogRateLimiter(time, WarningsPerWindow, WarningWindow);
    }

    public TimeoutSettings Settings { get; }

    public TimeProvider Time { get; }

    /// <summary>The listener-wide budget of connection warnings.</summary>
    public LogRateLimiter Warnings { get; }

    /// <summary>Connections being watched now.</summary>
    public int Count => _connections.Count;

    /// <summary>A new budget for one connection's warning and error lines.</summary>
    public LogRateLimiter NewConnectionBudget() => new(Time, ConnectionWarningsPerWindow, WarningWindow);

    /// <summary>Starts the sweeper.</summary>
    public void Start()
    {
        var period = Settings.SweepPeriod;
        _timer ??= Time.CreateTimer(static state => ((ConnectionGuard)state!).Sweep(), this, period, period);
    }

    public void Track(ITimedConnection connection) => _connections[connection.Id] = connection;

    public void Untrack(long id) => _connections.TryRemove(id, out _);

    /// <summary>True when a connection warning may be logged now (after the count of those suppressed before it, if any).</summary>
    public bool MayWarn()
    {
        if (!Warnings.TryAcquire(out var suppressed))
        {
            return false;
        }

        if (suppressed > 0)
        {
            LogSuppressed(_logger, suppressed, WarningsPerWindow, WarningWindow.TotalSeconds);
        }

        return true;
    }

    /// <summary>One pass over every connection (the timer's callback; tests call it directly).</summary>
    internal void Sweep()
    {
        if (!_sweeping.TryEnter())
        {
            return; // the previous pass is still running
        }

        try
        {
            var now = Time.GetTimestamp();
            foreach (var (_, connection) in _connections)
            {
                connection.CheckTimeouts(now);
            }

            if (Warnings.TakeSuppressed() is var suppressed and > 0)
            {
                LogSuppressed(_logger, suppressed, WarningsPerWindow, WarningWindow.TotalSeconds);
            }
        }
        finally
        {
            _sweeping.Exit();
        }
    }

    public void Dispose()
    {
        _timer?.Dispose();
        if (Warnings.TakeSuppressed(closing: true) is var suppressed and > 0)
        {
            LogSuppressed(_logger, suppressed, WarningsPerWindow, WarningWindow.TotalSeconds);
        }
    }

    [LoggerMessage(EventId = 2106, Level = LogLevel.Warning, Message = "{Suppressed} further connection warnings were not logged (at most {Max} per {Seconds} s); the counters in daemoneye-cli status count every one")]
    private static partial void LogSuppressed(ILogger logger, long suppressed, int max, double seconds);
}
