using System.Diagnostics;
using System.Runtime.InteropServices;
using DaemonEye.Protocol.Collector.V1;
using DaemonEye.Protocol.V1;
using DaemonEye.Topics;
using Google.Protobuf;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DaemonEye.Client;

/// <summary>
/// The collector runtime behind <see cref="CollectorServiceCollectionExtensions.AddDaemonEyeCollector"/>:
/// connects as ROLE_COLLECTOR, publishes heartbeats, serves RPC requests, and watches its supervisor.
/// </summary>
/// <remarks>
/// RPC rules: a request whose deadline has already passed when it arrives is not executed and gets
/// no answer (the agent answers the caller with Timeout itself, at that same deadline). Handlers
/// run concurrently on the thread pool; one that completes synchronously is answered inline. The
/// built-in HealthCheck and GetCapabilities (when the collector registers no handler of its own for
/// them) are answered on the bus reader itself. A handler's exception
/// answers ExecutionError with its message (<see cref="CollectorRpcException"/> picks the kind).
/// Stop (default) answers OK, waits until the agent has routed the answer, then stops the host
/// (exit code 0), graceful or not: the host's own shutdown lets in-flight handlers finish.
/// </remarks>
internal sealed partial class CollectorHost(
    IOptions<CollectorOptions> options,
    CollectorHandlers handlers,
    IHostApplicationLifetime lifetime,
    IServiceProvider services,
    ILogger<CollectorHost> logger,
    ILoggerFactory loggerFactory) : IHostedService, ICollectorContext, IAsyncDisposable
{
    public const string HeartbeatTopicPrefix = WellKnownTopics.HeartbeatPrefix;
    public const string HeartbeatContentType = "application/x-protobuf; messageType=daemoneye.collector.v1.Heartbeat";
    public const string DiagnosticsTopicPrefix = WellKnownTopics.DiagnosticsPrefix;

    private static readonly AsyncLocal<CorrelationMetadata?> Current = new();
    private readonly CollectorOptions _options = options.Value;
    private readonly TimeProvider _time = options.Value.Bus.TimeProvider;
    private readonly CancellationTokenSource _stopping = new();
    private readonly TaskCompletionSource _drained = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _startedAt;
    private BusClient? _client;
    private Task _heartbeats = Task.CompletedTask;
    private Task _requests = Task.CompletedTask;
    private ITimer? _orphanGuard;
    private ulong _heartbeatSequence;
    private int _inFlight;
    private int _stopRequested;
    private long _expired;

    public string CollectorId => _options.CollectorId!;

    public TimeSpan Uptime => _time.GetElapsedTime(_startedAt);

    public BusClient Client => Volatile.Read(ref _client) ?? throw new InvalidOperationException("the collector is not connected yet: its host has not started");

    public CorrelationMetadata? CurrentCall => Current.Value;

    /// <summary>Requests that arrived after their deadline and were not executed.</summary>
    public long ExpiredRequests => Interlocked.Read(ref _expired);

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        _startedAt = _time.GetTimestamp();
        if (_options.SupervisorPid is { } supervisor)
        {
            if (IsOrphaned(supervisor))
            {
                LogOrphaned(logger, CollectorId, supervisor);
                lifetime.StopApplication();
                return;
            }

            _orphanGuard = _time.CreateTimer(_ => CheckOrphan(supervisor), null, _options.OrphanCheckInterval, _options.OrphanCheckInterval);
        }

        // Process-wide (one reactor per process), and before the connection: its first answer may come within the window.
        Networking.SocketReactor.Shared.BusyPoll = _options.BusyPoll;
        var bus = _options.Bus;
        bus.ClientId = CollectorId;
        bus.Role = Role.Collector;
        bus.RegistrationToken = _options.RegistrationToken;
        bus.Capabilities.Clear();
        foreach (var capability in _options.DeclaredCapabilities())
        {
            bus.Capabilities.Add(capability);
        }

        bus.LoggerFactory ??= loggerFactory;
        try
        {
            _client = await BusClient.ConnectAsync(bus, cancellationToken).ConfigureAwait(false);
        }
        catch (BusException e)
        {
            LogRegistrationFailed(logger, CollectorId, e.Message);
            Environment.ExitCode = 1;
            _orphanGuard?.Dispose();
            throw;
        }

        var granted = string.Join(' ', _client.GrantedCapabilities);
        LogRegistered(logger, CollectorId, _client.ConnectionId ?? "?", granted);
        foreach (var refused in _client.RefusedCapabilities)
        {
            LogCapabilityRefused(logger, CollectorId, refused.Capability, refused.Reason);
        }

        _client.InlineRpcHandler = TryServeInline;
        _requests = Task.Run(ServeRequestsAsync, CancellationToken.None);
        if (_options.SendHeartbeats)
        {
            await PublishHeartbeatAsync(cancellationToken).ConfigureAwait(false);
            _heartbeats = Task.Run(SendHeartbeatsAsync, CancellationToken.None);
        }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        _orphanGuard?.Dispose();
        Volatile.Write(ref _stopRequested, 1);
        await _stopping.CancelAsync().ConfigureAwait(false);
        try
        {
            await Task.WhenAll(_heartbeats, _requests).ConfigureAwait(false);
            if (Volatile.Read(ref _inFlight) > 0)
            {
                await _drained.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
            // The host's shutdown timeout: leave what still runs.
        }

        await DisposeAsync().ConfigureAwait(false);
        LogStopped(logger, CollectorId);
    }

    public async ValueTask DisposeAsync()
    {
        var client = Interlocked.Exchange(ref _client, null);
        if (client is not null)
        {
            await client.DisposeAsync().ConfigureAwait(false);
        }

        _orphanGuard?.Dispose();
    }

    public ValueTask PublishAsync(string topic, ReadOnlyMemory<byte> payload, string? contentType = null, CancellationToken cancellationToken = default)
    {
        var call = Current.Value;
        var publish = call is null && contentType is null ? null : new PublishOptions
        {
            ContentType = contentType,
            ParentCorrelationId = call?.CorrelationId,
            RootCorrelationId = call is null ? null : string.IsNullOrEmpty(call.RootCorrelationId) ? call.CorrelationId : call.RootCorrelationId,
            WorkflowStage = string.IsNullOrEmpty(call?.WorkflowStage) ? null : call.WorkflowStage,
            Tags = call is { Tags.Count: > 0 } ? call.Tags : null,
        };
        return Client.PublishAsync(topic, payload, publish, cancellationToken);
    }

    public ValueTask PublishAsync(string topic, IMessage message, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(message);
        return PublishAsync(topic, message.ToByteArray(), "application/x-protobuf; messageType=" + message.Descriptor.FullName, cancellationToken);
    }

    // ----- heartbeats -----

    private async Task SendHeartbeatsAsync()
    {
        try
        {
            using var timer = new PeriodicTimer(_options.EffectiveHeartbeatInterval, _time);
            while (await timer.WaitForNextTickAsync(_stopping.Token).ConfigureAwait(false))
            {
                await PublishHeartbeatAsync(_stopping.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
        }
        catch (Exception e) when (e is BusException or ObjectDisposedException)
        {
            LogHeartbeatFailed(logger, CollectorId, e.Message);
        }
    }

    private ValueTask PublishHeartbeatAsync(CancellationToken cancellationToken)
    {
        var heartbeat = new Heartbeat
        {
            CollectorId = CollectorId,
            Pid = (uint)Environment.ProcessId,
            Sequence = ++_heartbeatSequence,
            UptimeMs = (ulong)Uptime.TotalMilliseconds,
            Status = "ok",
        };
        return Client.PublishAsync(HeartbeatTopicPrefix + CollectorId, heartbeat.ToByteArray(), new PublishOptions { ContentType = HeartbeatContentType }, cancellationToken);
    }

    // ----- RPC -----

    private async Task ServeRequestsAsync()
    {
        var reader = Client.RpcRequests;
        try
        {
            while (await reader.WaitToReadAsync(_stopping.Token).ConfigureAwait(false))
            {
                while (reader.TryRead(out var request))
                {
                    Interlocked.Increment(ref _inFlight);
                    _ = ServeAsync(request);
                }
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
        }
    }

    /// <summary>
    /// On the bus reader: HealthCheck and GetCapabilities with no handler of the collector's own are
    /// answered by the host from what it holds, without waiting on anything, so they are served right
    /// there (a round trip then skips two thread hand-offs). Everything else is queued for
    /// <see cref="ServeRequestsAsync"/>, so a collector's handler never runs on the reader.
    /// </summary>
    private bool TryServeInline(RpcRequest request)
    {
        if (request.Operation is not (RpcOperation.HealthCheck or RpcOperation.GetCapabilities)
            || handlers.ByOperation.ContainsKey(request.Operation)
            || _stopping.IsCancellationRequested)
        {
            return false;
        }

        Interlocked.Increment(ref _inFlight);
        _ = ServeAsync(request); // completes before it returns: nothing on this path awaits
        return true;
    }

    private async Task ServeAsync(RpcRequest request)
    {
        try
        {
            var id = request.Correlation?.CorrelationId ?? string.Empty;
            if (request.DeadlineUnixNanos != 0 && UnixTime.ToNanos(_time.GetUtcNow()) >= request.DeadlineUnixNanos)
            {
                Interlocked.Increment(ref _expired);
                LogExpired(logger, id, request.Operation);
                return;
            }

            Current.Value = request.Correlation;
            var started = Stopwatch.GetTimestamp();
            var stopAfter = false;
            RpcResponse response;
            try
            {
                var call = new CollectorCall(request, this, services);
                ByteString payload;
                if (handlers.ByOperation.TryGetValue(request.Operation, out var handler))
                {
                    payload = await handler(call, _stopping.Token).ConfigureAwait(false);
                }
                else
                {
                    (payload, stopAfter) = Default(call);
                }

                response = new RpcResponse { Correlation = request.Correlation, Status = RpcStatus.Ok, Payload = payload ?? ByteString.Empty };
            }
            catch (CollectorRpcException e)
            {
                response = BusClient.Failure(request, e.Kind, e.Message);
            }
            catch (Exception e) when (e is not OperationCanceledException || !_stopping.IsCancellationRequested)
            {
                LogHandlerFailed(logger, id, request.Operation, e);
                response = BusClient.Failure(request, RpcErrorKind.ExecutionError, $"{request.Operation} failed in collector '{CollectorId}': {e.Message}");
            }
            catch (OperationCanceledException)
            {
                response = BusClient.Failure(request, RpcErrorKind.ExecutionError, $"collector '{CollectorId}' is stopping; {request.Operation} was abandoned");
            }

            response.ExecutionTimeUs = (ulong)Stopwatch.GetElapsedTime(started).TotalMicroseconds;
            var client = Volatile.Read(ref _client);
            if (client is null)
            {
                return;
            }

            await client.RespondAsync(response).ConfigureAwait(false);
            if (stopAfter)
            {
                await StopAfterAnswerAsync(client, id).ConfigureAwait(false);
            }
        }
        catch (ObjectDisposedException)
        {
            // Stopped meanwhile: nobody to answer through.
        }
        finally
        {
            if (Interlocked.Decrement(ref _inFlight) == 0 && Volatile.Read(ref _stopRequested) != 0)
            {
                _drained.TrySetResult();
            }
        }
    }

    private (ByteString Payload, bool StopAfter) Default(CollectorCall call)
    {
        switch (call.Operation)
        {
            case RpcOperation.HealthCheck:
                var health = new HealthCheckResponse { Healthy = true, Status = "ok", UptimeMs = (ulong)Uptime.TotalMilliseconds };
                health.Details.Add("pid", Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));
                return (health.ToByteString(), false);
            case RpcOperation.GetCapabilities:
                var capabilities = new Capabilities { Capacity = _options.Capacity };
                capabilities.TaskTypes.Add(_options.TaskTypes);
                capabilities.EventDomains.Add(_options.EventDomains);
                return (capabilities.ToByteString(), false);
            case RpcOperation.Stop when !handlers.StopReplaced:
                var stop = call.Payload(StopRequest.Parser);
                LogStopRequested(logger, CollectorId, call.Correlation.CorrelationId, stop.Graceful);
                return (ByteString.Empty, true);
            case RpcOperation.Diagnostics:
                return (Diagnose(call).ToByteString(), false);
            case RpcOperation.UpdateConfig:
                throw new CollectorRpcException(RpcErrorKind.InvalidOperation, $"collector '{CollectorId}' does not accept configuration updates (no UpdateConfig handler)");
            default:
                var supported = new SortedSet<string>(handlers.ByOperation.Keys.Select(o => o.ToString())) { nameof(RpcOperation.HealthCheck), nameof(RpcOperation.GetCapabilities), nameof(RpcOperation.Stop), nameof(RpcOperation.Diagnostics) };
                throw new CollectorRpcException(RpcErrorKind.InvalidOperation, $"collector '{CollectorId}' does not support {call.Operation}; supported: {string.Join(", ", supported)}");
        }
    }

    private async Task StopAfterAnswerAsync(BusClient client, string correlationId)
    {
        // The Pong means the agent has routed our answer; then the host stops (exit code 0).
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2), _time);
        try
        {
            await client.FlushAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or BusException)
        {
            LogStopFlushFailed(logger, correlationId, e.Message);
        }

        lifetime.StopApplication();
    }

    // ----- orphan guard -----

    private void CheckOrphan(int supervisor)
    {
        if (IsOrphaned(supervisor))
        {
            _orphanGuard?.Dispose();
            LogOrphaned(logger, CollectorId, supervisor);
            lifetime.StopApplication();
        }
    }

    private static bool IsOrphaned(int supervisor) => Native.getppid() != supervisor;

    private static partial class Native
    {
        [LibraryImport("libc")]
        internal static partial int getppid();
    }

    [LoggerMessage(EventId = 100, Level = LogLevel.Information, Message = "Collector {CollectorId} registered with the agent as connection {ConnectionId}; granted: {Capabilities}")]
    private static partial void LogRegistered(ILogger logger, string collectorId, string connectionId, string capabilities);

    [LoggerMessage(EventId = 120, Level = LogLevel.Warning, Message = "Collector {CollectorId}: the agent refused capability {Capability}: {Reason}")]
    private static partial void LogCapabilityRefused(ILogger logger, string collectorId, string capability, string reason);

    [LoggerMessage(EventId = 101, Level = LogLevel.Critical, Message = "Collector {CollectorId} could not register with the agent: {Reason}")]
    private static partial void LogRegistrationFailed(ILogger logger, string collectorId, string reason);

    [LoggerMessage(EventId = 102, Level = LogLevel.Warning, Message = "Collector {CollectorId}: the supervising agent (pid {SupervisorPid}) is gone; stopping")]
    private static partial void LogOrphaned(ILogger logger, string collectorId, int supervisorPid);

    [LoggerMessage(EventId = 103, Level = LogLevel.Debug, Message = "RPC {CorrelationId} {Operation} arrived after its deadline; not executed")]
    private static partial void LogExpired(ILogger logger, string correlationId, RpcOperation operation);

    [LoggerMessage(EventId = 104, Level = LogLevel.Warning, Message = "RPC {CorrelationId} {Operation} handler failed")]
    private static partial void LogHandlerFailed(ILogger logger, string correlationId, RpcOperation operation, Exception error);

    [LoggerMessage(EventId = 105, Level = LogLevel.Information, Message = "Collector {CollectorId}: Stop requested by RPC {CorrelationId} (graceful: {Graceful})")]
    private static partial void LogStopRequested(ILogger logger, string collectorId, string correlationId, bool graceful);

    [LoggerMessage(EventId = 106, Level = LogLevel.Warning, Message = "RPC {CorrelationId}: could not confirm the Stop answer reached the agent: {Reason}")]
    private static partial void LogStopFlushFailed(ILogger logger, string correlationId, string reason);

    [LoggerMessage(EventId = 107, Level = LogLevel.Warning, Message = "Collector {CollectorId}: heartbeats stopped: {Reason}")]
    private static partial void LogHeartbeatFailed(ILogger logger, string collectorId, string reason);

    [LoggerMessage(EventId = 108, Level = LogLevel.Information, Message = "Collector {CollectorId} stopped")]
    private static partial void LogStopped(ILogger logger, string collectorId);
}
