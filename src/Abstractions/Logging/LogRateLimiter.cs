namespace DaemonEye.Logging;

/// <summary>
/// A budget of log lines: at most <c>perWindow</c> lines in each window of <c>window</c>; lines
/// beyond it are suppressed and counted, and the count is handed back once, for one line that says
/// how many were left out (when the next line is allowed after the window ends, when a timer notices
/// the window ended, or when the owner closes). Thread-safe; time from the given <see cref="TimeProvider"/>.
/// </summary>
public sealed class LogRateLimiter
{
    private readonly Lock _gate = new();
    private readonly TimeProvider _time;
    private readonly long _windowTicks;
    private long _windowStart;
    private bool _started;
    private int _logged;
    private long _suppressed;

    public LogRateLimiter(TimeProvider time, int perWindow, TimeSpan window)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(perWindow, 1);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(window, TimeSpan.Zero);
        _time = time;
        PerWindow = perWindow;
        Window = window;
        _windowTicks = (long)(window.TotalSeconds * time.TimestampFrequency);
    }

    public int PerWindow { get; }

    public TimeSpan Window { get; }

    /// <summary>Lines suppressed so far and not yet reported.</summary>
    public long Pending
    {
        get
        {
            lock (_gate)
            {
                return _suppressed;
            }
        }
    }

    /// <summary>
    /// True when the caller may write its line. <paramref name="suppressedBefore"/>: lines suppressed
    /// in the window that just ended, to be reported (before this line) when not 0.
    /// </summary>
    public bool TryAcquire(out long suppressedBefore)
    {
        var now = _time.GetTimestamp();
        lock (_gate)
        {
            suppressedBefore = 0;
            if (!_started || now - _windowStart >= _windowTicks)
            {
                suppressedBefore = _suppressed;
                _suppressed = 0;
                _windowStart = now;
                _started = true;
                _logged = 0;
            }

            if (_logged < PerWindow)
            {
                _logged++;
                return true;
            }

            _suppressed++;
            return false;
        }
    }

    /// <summary>
    /// The suppressed count to report now: when the window has ended (or <paramref name="closing"/>),
    /// the count so far, reset to 0; otherwise 0 (it will be reported later).
    /// </summary>
    public long TakeSuppressed(bool closing = false)
    {
        var now = _time.GetTimestamp();
        lock (_gate)
        {
            if (_suppressed == 0 || (!closing && now - _windowStart < _windowTicks))
            {
                return 0;
            }

            var count = _suppressed;
            _suppressed = 0;
            return count;
        }
    }
}
