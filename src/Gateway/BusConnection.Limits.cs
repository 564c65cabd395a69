using DaemonEye.Gateway.Security;
using DaemonEye.Logging;
using Microsoft.Extensions.Logging;
using ErrorCode = DaemonEye.Protocol.V1.ErrorCode;

namespace DaemonEye.Gateway;

/// <summary>
/// Time limits and log budgets: the handshake, frame and idle timeouts (judged by the listener's
/// <see cref="ConnectionGuard"/> sweeper, acted on by the read loop), and the rate limit on this
/// connection's warning and error lines.
/// </summary>
internal sealed partial class BusConnection : ITimedConnection
{
    private readonly ConnectionGuard _guard;
    private readonly ReadDeadlines _deadlines;
    private readonly LogRateLimiter _logBudget;
    private long _partialBytes; // bytes of the frame being received, for the timeout's message

    /// <summary>The sweeper: cuts the read loop's wait on the socket when a timeout is due.</summary>
    public void CheckTimeouts(long now)
    {
        if (_deadlines.TryCut(now, holdsSubscriptions: SubscriptionCount > 0))
        {
            _input.CancelPendingRead();
        }
    }

    /// <summary>Closes the connection for <paramref name="reason"/>: a fatal LIMIT_EXCEEDED naming the key, counted, logged.</summary>
    private void TimeOut(ConnectionTimeout reason)
    {
        var settings = _deadlines.Settings;
        var (limit, message) = reason switch
        {
            ConnectionTimeout.Handshake => (Limit.HandshakeTimeout,
                $"no complete Hello within broker.handshake_timeout_seconds ({Seconds(settings.Handshake)} s) of connecting{(_partialBytes > 0 ? $" ({_partialBytes} bytes of a frame had arrived)" : string.Empty)}; the first frame must be a Hello"),
            ConnectionTimeout.Frame => (Limit.FrameTimeout,
                $"a frame begun {Seconds(_deadlines.PartialFrameAge(_guard.Time.GetTimestamp()))} s ago is still not complete ({_partialBytes} bytes of it arrived); broker.frame_timeout_seconds is {Seconds(settings.Frame)} s"),
            _ => (Limit.IdleTimeout,
                $"nothing received for broker.idle_timeout_seconds ({Seconds(settings.Idle)} s) on a connection that holds no subscription; send a Ping to stay connected while idle"),
        };
        _stats.AddLimitRefusal(limit);
        if (MayWarn())
        {
            LogTimedOut(_logger, Id, _clientId, Limits.Name(limit), _peer?.Pid ?? 0, _peer?.Uid ?? uint.MaxValue, message);
        }

        TryEnqueueError(0, ErrorCode.LimitExceeded, message, fatal: true);
    }

    private static string Seconds(TimeSpan span) => span.TotalSeconds.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>True when this connection may log a warning or error now: within its own budget and the listener's.</summary>
    private bool MayWarn()
    {
        if (!_logBudget.TryAcquire(out var suppressed))
        {
            return false;
        }

        if (suppressed > 0)
        {
            LogWarningsSuppressed(_logger, Id, _clientId, suppressed, ConnectionGuard.ConnectionWarningsPerWindow, ConnectionGuard.WarningWindow.TotalSeconds);
        }

        return _guard.MayWarn();
    }

    /// <summary>At close: says how many of this connection's lines the budget left out, if any.</summary>
    private void ReportSuppressed()
    {
        _guard.Untrack(Id);
        if (_logBudget.TakeSuppressed(closing: true) is var suppressed and > 0 && _guard.MayWarn())
        {
            LogWarningsSuppressed(_logger, Id, _clientId, suppressed, ConnectionGuard.ConnectionWarningsPerWindow, ConnectionGuard.WarningWindow.TotalSeconds);
        }
    }

    [LoggerMessage(EventId = 2008, Level = LogLevel.Warning, Message = "Connection {ConnectionId} ({ClientId}) closed by {Limit} (pid {Pid}, uid {Uid}): {Detail}")]
    private static partial void LogTimedOut(ILogger logger, long connectionId, string clientId, string limit, int pid, uint uid, Untrusted detail);

    [LoggerMessage(EventId = 2009, Level = LogLevel.Warning, Message = "Connection {ConnectionId} ({ClientId}): {Suppressed} further warning and error lines were not logged (at most {Max} per {Seconds} s per connection)")]
    private static partial void LogWarningsSuppressed(ILogger logger, long connectionId, string clientId, long suppressed, int max, double seconds);
}
