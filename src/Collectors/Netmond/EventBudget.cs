using DaemonEye.Protocol.Network.V1;

namespace DaemonEye.Collectors.Netmond;

/// <summary>
/// The event rate budget: at most event_budget_per_second connection and listener events are
/// published one by one in each second (windows of one second on the <see cref="TimeProvider"/>,
/// starting at the first event after a quiet one); the rest are counted by kind, with their bytes,
/// and summed up in one <see cref="EventsCoalesced"/> when the window ends. Anomalies are not
/// budgeted. Thread-safe.
/// </summary>
internal sealed class EventBudget(TimeProvider time, Func<int> perSecond, string collectorId)
{
    private static readonly TimeSpan Window = TimeSpan.FromSeconds(1);
    private readonly Lock _lock = new();
    private long _windowStart;
    private DateTimeOffset _windowStartWall;
    private int _used;
    private EventsCoalesced? _pending;
    private long _coalesced;

    /// <summary>Events counted instead of published, over netmond's life.</summary>
    public long Coalesced => Interlocked.Read(ref _coalesced);

    /// <summary>True when <paramref name="e"/> may be published now; otherwise it is counted.
    /// <paramref name="finished"/> is the summary of a window that just ended, to publish first.</summary>
    public bool TryTake(object e, out EventsCoalesced? finished)
    {
        lock (_lock)
        {
            finished = RollLocked();
            if (_windowStart == 0)
            {
                _windowStart = time.GetTimestamp();
                _windowStartWall = time.GetUtcNow();
            }

            if (_used < perSecond())
            {
                _used++;
                return true;
            }

            _pending ??= new EventsCoalesced { WindowStartUnixMs = (ulong)_windowStartWall.ToUnixTimeMilliseconds(), CollectorId = collectorId };
            switch (e)
            {
                case ConnectionEvent { Kind: ConnectionEventKind.Opened }:
                    _pending.ConnectionsOpened++;
                    break;
                case ConnectionEvent c:
                    _pending.ConnectionsClosed++;
                    _pending.BytesSent += c.Connection.BytesSent;
                    _pending.BytesReceived += c.Connection.BytesReceived;
                    break;
                case ListenerEvent { Kind: ListenerEventKind.Started }:
                    _pending.ListenersStarted++;
                    break;
                default:
                    _pending.ListenersStopped++;
                    break;
            }

            Interlocked.Increment(ref _coalesced);
            return false;
        }
    }

    /// <summary>The summary of a window that has ended, if it coalesced anything (call on a tick).</summary>
    public EventsCoalesced? Roll()
    {
        lock (_lock)
        {
            return RollLocked();
        }
    }

    private EventsCoalesced? RollLocked()
    {
        if (_windowStart == 0 || time.GetElapsedTime(_windowStart) < Window)
        {
            return null;
        }

        var finished = _pending;
        if (finished is not null)
        {
            finished.WindowEndUnixMs = (ulong)(_windowStartWall + Window).ToUnixTimeMilliseconds();
        }

        _pending = null;
        _used = 0;
        _windowStart = 0;
        return finished;
    }
}
