using System.Collections.Concurrent;
using System.Diagnostics;
using DaemonEye.Configuration;
using DaemonEye.Logging;
using DaemonEye.Protocol.V1;
using DaemonEye.Topics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DaemonEye.Gateway.Rpc;

/// <summary>Something that takes part in RPC: a socket connection or the agent itself.</summary>
internal interface IRpcPeer
{
    long Id { get; }

    string Name { get; }

    /// <summary>Hands a request to this peer as the callee. Must not block.</summary>
    void DeliverRequest(RpcRequest request);

    /// <summary>Hands a response to this peer as the caller. Must not block.</summary>
    void DeliverResponse(RpcResponse response);

    /// <summary>The agent itself: its lifecycle calls go to the collector, not back to the agent's process manager.</summary>
    bool IsAgent => false;
}

/// <summary>A connected collector, as the agent's other components see it.</summary>
public sealed record CollectorPresence(string CollectorId, long ConnectionId, int Pid, uint Uid, IReadOnlyList<string> Capabilities);

/// <summary>Told when collectors connect and disconnect, and when their liveness or health checks change
/// (<see cref="Collectors.CollectorDirectory"/> raises these; the supervisor and the task coordinator listen).</summary>
public interface ICollectorPresenceObserver
{
    void OnCollectorConnected(CollectorPresence presence);

    void OnCollectorDisconnected(string collectorId, long connectionId);

    /// <summary>The directory's liveness rule moved the collector from <paramref name="before"/> to <paramref name="after"/>. Must not block.</summary>
    void OnCollectorLivenessChanged(string collectorId, Collectors.CollectorHealthState before, Collectors.CollectorHealthState after);

    /// <summary>
    /// The agent's periodic HealthCheck of the collector came back: <paramref name="healthy"/> false when
    /// it answered unhealthy or the call failed (timeout, error); <paramref name="detail"/> says which.
    /// Must not block.
    /// </summary>
    void OnCollectorHealthChecked(string collectorId, bool healthy, string detail);
}

/// <summary>
/// Routes RPC calls point to point: a request for <c>control.collector.&lt;id&gt;</c> goes to the
/// one connection registered as that collector; its response goes back to the caller alone. Keeps
/// the pending calls (bounded by <c>rpc.max_pending_requests</c>), enforces deadlines with a sweep
/// on <see cref="TimeProvider"/>, discards and counts late answers, and fails every call pending on
/// a connection that drops with CommunicationError.
/// </summary>
internal sealed partial class RpcRouter : IDisposable
{
    public const string TargetPrefix = WellKnownTopics.CollectorPrefix;
    private static readonly TimeSpan SweepInterval = TimeSpan.FromMilliseconds(20);

    private readonly ConcurrentDictionary<string, (IRpcPeer Peer, CollectorPresence Presence)> _collectors = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, PendingCall> _pending = new(StringComparer.Ordinal);
    private readonly IOptionsMonitor<RpcOptions> _options;
    private readonly TimeProvider _time;
    private readonly Collectors.CollectorDirectory _presence;
    private readonly ILogger<RpcRouter> _logger;
    private readonly Metrics.RpcMetrics? _metrics;
    private readonly ITimer _sweep;
    private readonly Lock _sweepGate = new();
    private bool _sweeping;
    private int _pendingCount;
    private long _requests;
    private long _responses;
    private long _timeouts;
    private long _late;
    private long _rejected;
    private long _invalidPayloads;
    private long _communicationErrors;

    /// <summary>For tests: fixed options.</summary>
    internal RpcRouter(IOptions<RpcOptions> options, TimeProvider time, Collectors.CollectorDirectory presence, ILogger<RpcRouter> logger, Metrics.RpcMetrics? metrics = null)
        : this(new FixedOptions<RpcOptions>(options.Value), time, presence, logger, metrics)
    {
    }

    /// <summary>The options are read at each call: a configuration reload changes the default timeout and the pending bound live.</summary>
    public RpcRouter(IOptionsMonitor<RpcOptions> options, TimeProvider time, Collectors.CollectorDirectory presence, ILogger<RpcRouter> logger, Metrics.RpcMetrics? metrics = null)
    {
        _metrics = metrics;
        metrics?.Attach(() => Pending, () => _collectors.Count);
        _options = options;
        _time = time;
        _presence = presence;
        _logger = logger;
        _sweep = time.CreateTimer(_ => Sweep(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    public int Pending => Volatile.Read(ref _pendingCount);

    /// <summary>Requests refused because their payload did not fit the operation's schema (also in <see cref="RpcStatistics.Rejected"/>).</summary>
    public long InvalidPayloads => Interlocked.Read(ref _invalidPayloads);

    /// <summary>The collector model the router reports presence and heartbeats to (it keeps only the routing table).</summary>
    public Collectors.CollectorDirectory Directory => _presence;

    public RpcStatistics Statistics => new(
        Interlocked.Read(ref _requests),
        Interlocked.Read(ref _responses),
        Interlocked.Read(ref _timeouts),
        Interlocked.Read(ref _late),
        Interlocked.Read(ref _rejected),
        Interlocked.Read(ref _communicationErrors),
        Pending);

    public IReadOnlyCollection<string> CollectorIds => [.. _collectors.Keys.Order(StringComparer.Ordinal)];

    public CollectorPresence? Find(string collectorId) => _collectors.TryGetValue(collectorId, out var c) ? c.Presence : null;

    /// <summary>Registers a collector connection; false when the id is already held.</summary>
    public bool TryRegisterCollector(IRpcPeer peer, CollectorPresence presence, out string? error)
    {
        if (!_collectors.TryAdd(presence.CollectorId, (peer, presence)))
        {
            var holder = _collectors.TryGetValue(presence.CollectorId, out var existing) ? $"connection c{existing.Presence.ConnectionId} (pid {existing.Presence.Pid})" : "another connection";
            error = $"collector id '{presence.CollectorId}' is already registered by {holder}";
            return false;
        }

        error = null;
        LogCollectorRegistered(_logger, presence.CollectorId, presence.ConnectionId, presence.Pid);
        _presence.Connected(presence);

        return true;
    }

    /// <summary>Tells the observers that <paramref name="collectorId"/> sent a heartbeat.</summary>
    public void NotifyHeartbeat(string collectorId)
    {
        _metrics?.Heartbeat();
        _presence.Heartbeat(collectorId);
    }

    /// <summary>
    /// A connection closed: calls it made are forgotten (nobody is left to answer), calls pending on
    /// it as callee fail with CommunicationError, and a collector it held is unregistered.
    /// </summary>
    public void PeerClosed(IRpcPeer peer)
    {
        string? collectorId = null;
        foreach (var (id, entry) in _collectors)
        {
            if (ReferenceEquals(entry.Peer, peer) && _collectors.TryRemove(new KeyValuePair<string, (IRpcPeer, CollectorPresence)>(id, entry)))
            {
                collectorId = id;
            }
        }

        foreach (var (key, call) in _pending)
        {
            if (ReferenceEquals(call.Caller, peer))
            {
                Remove(key, call);
            }
            else if (ReferenceEquals(call.Callee, peer) && Remove(key, call))
            {
                Interlocked.Increment(ref _communicationErrors);
                _metrics?.Error(call.Request.Operation, RpcErrorKind.CommunicationError);
                call.Caller.DeliverResponse(Failure(call.Request, RpcErrorKind.CommunicationError,
                    $"collector '{call.CalleeName}' disconnected while the call was pending"));
            }
        }

        if (collectorId is not null)
        {
            LogCollectorUnregistered(_logger, collectorId, peer.Id);
            _presence.Disconnected(collectorId, peer.Id);
        }
    }

    /// <summary>Routes a request from <paramref name="caller"/>. Never blocks; errors are answered at once.</summary>
    public void HandleRequest(IRpcPeer caller, RpcRequest request)
    {
        Interlocked.Increment(ref _requests);
        _metrics?.Request(request.Operation);
        var now = _time.GetUtcNow();
        var correlationId = request.Correlation?.CorrelationId ?? string.Empty;
        if (correlationId.Length is 0 or > Protocol.ProtocolConstants.MaxCorrelationIdLength)
        {
            Reject(caller, request, RpcErrorKind.InvalidOperation,
                $"correlation.correlation_id must be 1 to {Protocol.ProtocolConstants.MaxCorrelationIdLength} characters; got {correlationId.Length}");
            return;
        }

        if (request.Operation == RpcOperation.Unspecified || !Enum.IsDefined(request.Operation))
        {
            Reject(caller, request, RpcErrorKind.InvalidOperation,
                $"operation {(int)request.Operation} is not an RPC operation; allowed: Start, Stop, Restart, HealthCheck, UpdateConfig, GetCapabilities, ExecuteTask, Diagnostics");
            return;
        }

        if (!TryParseTarget(request.Target, out var collectorId, out var targetError))
        {
            Reject(caller, request, RpcErrorKind.InvalidOperation, targetError);
            return;
        }

        // A payload whose schema the agent knows is checked here; a malformed one is never forwarded.
        if (RpcPayloads.Problem(request.Operation, request.Payload) is { } payloadProblem)
        {
            Interlocked.Increment(ref _invalidPayloads);
            _metrics?.InvalidPayload(request.Operation);
            Reject(caller, request, RpcErrorKind.InvalidOperation, payloadProblem);
            return;
        }

        if (caller.IsAgent is false && IsLifecycle(request.Operation) && _presence.Controller is { } controller)
        {
            // Start, Stop and Restart are the process manager's, whoever asks (one implementation with IPC).
            _ = ServeLifecycleAsync(caller, request, collectorId, controller, now);
            return;
        }

        if (!_collectors.TryGetValue(collectorId, out var callee))
        {
            var known = _collectors.IsEmpty ? "none are connected" : "connected: " + string.Join(", ", CollectorIds);
            Reject(caller, request, RpcErrorKind.NotFound, $"no collector '{collectorId}' is registered with the bus ({known})");
            return;
        }

        // Timeouts travel as an absolute deadline that the callee honours.
        var options = _options.CurrentValue;
        var timeout = request.TimeoutMs > 0 ? TimeSpan.FromMilliseconds(request.TimeoutMs) : options.DefaultTimeout;
        if (request.DeadlineUnixNanos == 0)
        {
            request.DeadlineUnixNanos = ToUnixNanos(now + timeout);
        }

        if (request.TimeoutMs == 0)
        {
            request.TimeoutMs = (uint)timeout.TotalMilliseconds;
        }

        if (request.DeadlineUnixNanos <= ToUnixNanos(now))
        {
            Interlocked.Increment(ref _timeouts);
            _metrics?.Error(request.Operation, RpcErrorKind.Timeout);
            caller.DeliverResponse(Failure(request, RpcErrorKind.Timeout, "the call's deadline had passed before it reached the agent; it was not forwarded"));
            return;
        }

        if (Interlocked.Increment(ref _pendingCount) > options.MaxPendingRequests)
        {
            Interlocked.Decrement(ref _pendingCount);
            Reject(caller, request, RpcErrorKind.ResourceExhausted,
                $"rpc.max_pending_requests ({options.MaxPendingRequests}) calls are already pending; retry later or raise rpc.max_pending_requests");
            return;
        }

        var call = new PendingCall(caller, callee.Peer, collectorId, request, request.DeadlineUnixNanos, Stopwatch.GetTimestamp());
        if (!_pending.TryAdd(correlationId, call))
        {
            Interlocked.Decrement(ref _pendingCount);
            Reject(caller, request, RpcErrorKind.InvalidOperation, $"correlation id '{correlationId}' is already in flight; every pending call needs its own id");
            return;
        }

        EnsureSweeping();
        LogForwarded(_logger, correlationId, request.Operation, collectorId, caller.Name);
        callee.Peer.DeliverRequest(request);
    }

    private static bool IsLifecycle(RpcOperation operation) =>
        operation is RpcOperation.Start or RpcOperation.Stop or RpcOperation.Restart;

    /// <summary>Runs a lifecycle request on the process manager, off the reading thread, within the caller's deadline.</summary>
    private async Task ServeLifecycleAsync(IRpcPeer caller, RpcRequest request, string collectorId, Collectors.ICollectorController controller, DateTimeOffset now)
    {
        await Task.Yield();
        var timeout = request.DeadlineUnixNanos > 0
            ? UnixTime.FromNanos(request.DeadlineUnixNanos) - now
            : request.TimeoutMs > 0 ? TimeSpan.FromMilliseconds(request.TimeoutMs) : _options.CurrentValue.DefaultTimeout;
        var started = Stopwatch.GetTimestamp();
        LogForwarded(_logger, request.Correlation.CorrelationId, request.Operation, collectorId, caller.Name);
        RpcResponse response;
        var work = controller.ExecuteLifecycleAsync(collectorId, request, CancellationToken.None);
        try
        {
            // The operation itself runs to its end (a stop half done is worse than a late one); the caller is answered by its deadline.
            response = await work.WaitAsync(timeout > TimeSpan.Zero ? timeout : TimeSpan.Zero, _time);
        }
        catch (TimeoutException)
        {
            Interlocked.Increment(ref _timeouts);
            _metrics?.Error(request.Operation, RpcErrorKind.Timeout);
            response = Failure(request, RpcErrorKind.Timeout,
                $"{request.Operation} of collector '{collectorId}' did not finish within {timeout.TotalSeconds:0.###} s; it goes on in the agent: watch daemoneye-cli collectors list");
            caller.DeliverResponse(response);
            return;
        }
        catch (Exception ex)
        {
            response = Failure(request, RpcErrorKind.ExecutionError, $"{request.Operation} of collector '{collectorId}' failed in the agent: {ex.Message}");
        }

        response.Correlation = request.Correlation;
        response.ExecutionTimeUs = (ulong)Stopwatch.GetElapsedTime(started).TotalMicroseconds;
        Interlocked.Increment(ref _responses);
        _metrics?.Response(request.Operation, response, Stopwatch.GetElapsedTime(started));
        caller.DeliverResponse(response);
    }

    /// <summary>True when a call with this id is pending on a callee other than <paramref name="peer"/> (an answer from <paramref name="peer"/> is then not its to give).</summary>
    public bool IsAnsweredByAnother(string correlationId, IRpcPeer peer) =>
        _pending.TryGetValue(correlationId, out var call) && !ReferenceEquals(call.Callee, peer);

    /// <summary>Routes a response from <paramref name="callee"/> back to the caller that is waiting for it.</summary>
    public void HandleResponse(IRpcPeer callee, RpcResponse response)
    {
        var correlationId = response.Correlation?.CorrelationId ?? string.Empty;
        if (!_pending.TryGetValue(correlationId, out var call) || !ReferenceEquals(call.Callee, callee))
        {
            // Too late (timed out and answered already), or not this peer's call to answer.
            Interlocked.Increment(ref _late);
            _metrics?.Late();
            LogLateResponse(_logger, correlationId, callee.Name);
            return;
        }

        if (!Remove(correlationId, call))
        {
            Interlocked.Increment(ref _late);
            _metrics?.Late();
            return;
        }

        Interlocked.Increment(ref _responses);
        _metrics?.Response(call.Request.Operation, response, Stopwatch.GetElapsedTime(call.Started));
        var level = response.Status == RpcStatus.Ok ? LogLevel.Debug : LogLevel.Information;
        if (_options.CurrentValue.EnableCorrelationTracking && _logger.IsEnabled(level))
        {
            // rpc.enable_correlation_tracking: one line per completed call, with its chain and duration; at debug
            // for a call that succeeded (a benchmark makes hundreds of thousands), at information for a failure.
            // The information-level record of the traffic is RpcActivityLogger's periodic line.
            var millis = Stopwatch.GetElapsedTime(call.Started).TotalMilliseconds;
            LogCompleted(_logger, level, correlationId, call.Request.Correlation?.RootCorrelationId ?? string.Empty, call.Request.Operation, call.CalleeName, response.Status, millis);
        }

        if (call.Request.Operation == RpcOperation.UpdateConfig && response.Status == RpcStatus.Ok && _presence.Controller is { } controller)
        {
            controller.OnConfigurationApplied(call.CalleeName, call.Request, response);
        }

        call.Caller.DeliverResponse(response);
    }

    private bool Remove(string key, PendingCall call)
    {
        if (_pending.TryRemove(new KeyValuePair<string, PendingCall>(key, call)))
        {
            Interlocked.Decrement(ref _pendingCount);
            return true;
        }

        return false;
    }

    private void Reject(IRpcPeer caller, RpcRequest request, RpcErrorKind kind, string message)
    {
        Interlocked.Increment(ref _rejected);
        _metrics?.Error(request.Operation, kind);
        LogRejected(_logger, request.Correlation?.CorrelationId ?? string.Empty, request.Operation, kind, message);
        caller.DeliverResponse(Failure(request, kind, message));
    }

    public static RpcResponse Failure(RpcRequest request, RpcErrorKind kind, string message) => new()
    {
        Correlation = request.Correlation ?? new CorrelationMetadata(),
        Status = RpcStatus.Error,
        Error = new RpcError { Kind = kind, Message = message },
    };

    public static bool TryParseTarget(string target, out string collectorId, out string error)
    {
        collectorId = string.Empty;
        var validation = TopicRules.ValidateTopic(target);
        if (!validation.IsValid)
        {
            error = $"target '{target}' is not a valid topic: {validation.Error}";
            return false;
        }

        if (!target.StartsWith(TargetPrefix, StringComparison.Ordinal) || target.IndexOf('.', TargetPrefix.Length) >= 0)
        {
            error = $"target '{target}' is not a collector; RPC targets are '{TargetPrefix}<collector id>'";
            return false;
        }

        collectorId = target[TargetPrefix.Length..];
        error = string.Empty;
        return true;
    }

    public static ulong ToUnixNanos(DateTimeOffset time) => UnixTime.ToNanos(time);

    private void EnsureSweeping()
    {
        lock (_sweepGate)
        {
            if (!_sweeping)
            {
                _sweeping = true;
                _sweep.Change(SweepInterval, SweepInterval);
            }
        }
    }

    /// <summary>Fails every call whose deadline has passed with Timeout; stops itself when idle.</summary>
    internal void Sweep()
    {
        var now = ToUnixNanos(_time.GetUtcNow());
        foreach (var (key, call) in _pending)
        {
            if (call.Deadline <= now && Remove(key, call))
            {
                Interlocked.Increment(ref _timeouts);
                _metrics?.Error(call.Request.Operation, RpcErrorKind.Timeout);
                var timeout = TimeSpan.FromMilliseconds(call.Request.TimeoutMs);
                LogTimedOut(_logger, key, call.Request.Operation, call.CalleeName, timeout.TotalMilliseconds);
                call.Caller.DeliverResponse(Failure(call.Request, RpcErrorKind.Timeout,
                    $"collector '{call.CalleeName}' did not answer {call.Request.Operation} within {timeout.TotalSeconds:0.###} s; check its health (daemoneye-cli collectors health {call.CalleeName}) or raise the timeout"));
            }
        }

        lock (_sweepGate)
        {
            if (_pending.IsEmpty && _sweeping)
            {
                _sweeping = false;
                _sweep.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            }
        }
    }

    public void Dispose() => _sweep.Dispose();

    private sealed record PendingCall(IRpcPeer Caller, IRpcPeer Callee, string CalleeName, RpcRequest Request, ulong Deadline, long Started);

    [LoggerMessage(EventId = 3000, Level = LogLevel.Information, Message = "Collector {CollectorId} registered on connection {ConnectionId} (pid {Pid})")]
    private static partial void LogCollectorRegistered(ILogger logger, string collectorId, long connectionId, int pid);

    [LoggerMessage(EventId = 3001, Level = LogLevel.Information, Message = "Collector {CollectorId} unregistered (connection {ConnectionId} closed)")]
    private static partial void LogCollectorUnregistered(ILogger logger, string collectorId, long connectionId);

    [LoggerMessage(EventId = 3002, Level = LogLevel.Debug, Message = "RPC {CorrelationId} {Operation} -> {CollectorId} from {Caller}")]
    private static partial void LogForwarded(ILogger logger, string correlationId, RpcOperation operation, string collectorId, string caller);

    [LoggerMessage(EventId = 3003, Message = "RPC {CorrelationId} {Operation} <- {CollectorId}: {Status} in {DurationMs:0.###} ms (root {RootCorrelationId})")]
    private static partial void LogCompleted(ILogger logger, LogLevel level, string correlationId, string rootCorrelationId, RpcOperation operation, string collectorId, RpcStatus status, double durationMs);

    [LoggerMessage(EventId = 3004, Level = LogLevel.Warning, Message = "RPC {CorrelationId} {Operation} -> {CollectorId} timed out after {DurationMs} ms")]
    private static partial void LogTimedOut(ILogger logger, string correlationId, RpcOperation operation, string collectorId, double durationMs);

    [LoggerMessage(EventId = 3005, Level = LogLevel.Information, Message = "RPC {CorrelationId} {Operation} refused ({Kind}): {Reason}")]
    private static partial void LogRejected(ILogger logger, Untrusted correlationId, RpcOperation operation, RpcErrorKind kind, Untrusted reason);

    [LoggerMessage(EventId = 3006, Level = LogLevel.Debug, Message = "RPC response {CorrelationId} from {Callee} discarded: no such call pending (late or not its call)")]
    private static partial void LogLateResponse(ILogger logger, Untrusted correlationId, string callee);
}

/// <summary>RPC counters.</summary>
public sealed record RpcStatistics(long Requests, long Responses, long Timeouts, long LateResponsesDiscarded, long Rejected, long CommunicationErrors, int Pending);
