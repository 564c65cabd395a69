using DaemonEye.Gateway.Collectors;
using DaemonEye.Logging;
using DaemonEye.Protocol.Collector.V1;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.V1;
using DaemonEye.Topics;
using Google.Protobuf;
using Microsoft.Extensions.Logging;

namespace DaemonEye.Supervision;

/// <summary>
/// Start, Stop and Restart: one implementation (<see cref="LifecycleAsync"/>) for the IPC commands
/// (<c>daemoneye-cli collectors start|stop|restart</c>) and the RPC calls on the bus, which the router
/// hands here (<see cref="ICollectorController"/>). Announcements of applied configuration updates.
/// </summary>
internal sealed partial class CollectorSupervisor
{
    private const string TargetPrefix = WellKnownTopics.CollectorPrefix;
    public const string ConfigTopic = WellKnownTopics.CollectorConfig;
    public const string ConfigContentType = "application/x-protobuf; messageType=daemoneye.collector.v1.ConfigChanged";

    /// <summary>IPC: runs a collector command.</summary>
    public async Task<(CollectorCommandResponse? Response, RpcError? Error)> ExecuteAsync(CollectorCommand command, CorrelationMetadata? parent, CancellationToken cancellationToken)
    {
        var id = command.Id;
        string message;
        HealthCheckResponse? health = null;
        switch (command.Action)
        {
            case CollectorAction.Start:
            case CollectorAction.Stop:
            case CollectorAction.Restart:
                var operation = command.Action switch
                {
                    CollectorAction.Start => RpcOperation.Start,
                    CollectorAction.Stop => RpcOperation.Stop,
                    _ => RpcOperation.Restart,
                };
                var (outcome, error) = await LifecycleAsync(id, operation, command.Graceful, parent, cancellationToken);
                if (error is not null)
                {
                    return (null, error);
                }

                message = outcome;
                break;
            case CollectorAction.Health:
                if (_directory.Find(id) is null)
                {
                    return (null, NotFound(id));
                }

                var timeout = command.TimeoutMs > 0 ? TimeSpan.FromMilliseconds(command.TimeoutMs) : (TimeSpan?)null;
                var response = await _rpc.CallAsync(id, RpcOperation.HealthCheck, timeout: timeout, parent: parent, cancellationToken: cancellationToken);
                if (response.Status != RpcStatus.Ok)
                {
                    return (null, response.Error);
                }

                health = HealthCheckResponse.Parser.ParseFrom(response.Payload);
                message = health.Healthy ? $"collector '{id}' is healthy: {health.Status}" : $"collector '{id}' reports unhealthy: {health.Status}";
                break;
            default:
                return (null, Error(RpcErrorKind.InvalidOperation, $"action {command.Action} is not one of start, stop, restart, health"));
        }

        var snapshot = _directory.Find(id);
        return (new CollectorCommandResponse { Collector = snapshot is null ? new CollectorStatus { Id = id } : ToStatus(snapshot), Health = health, Message = message }, null);
    }

    /// <summary>The bus: a Start, Stop or Restart RPC addressed to control.collector.&lt;id&gt;.</summary>
    public async Task<RpcResponse> ExecuteLifecycleAsync(string collectorId, RpcRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var graceful = true;
        if (request.Operation == RpcOperation.Stop && !request.Payload.IsEmpty)
        {
            try
            {
                graceful = StopRequest.Parser.ParseFrom(request.Payload).Graceful;
            }
            catch (InvalidProtocolBufferException ex)
            {
                return Answer(request, null, Error(RpcErrorKind.InvalidOperation, $"the Stop payload is not a daemoneye.collector.v1.StopRequest: {ex.Message}"));
            }
        }
        else if (request.Operation != RpcOperation.Stop && !request.Payload.IsEmpty)
        {
            return Answer(request, null, Error(RpcErrorKind.InvalidOperation, $"{request.Operation} takes no payload; got {request.Payload.Length} bytes"));
        }

        LogLifecycleRpc(_logger, request.Operation, collectorId, request.Correlation?.CorrelationId ?? string.Empty, graceful);
        var (message, error) = await LifecycleAsync(collectorId, request.Operation, graceful, request.Correlation, cancellationToken);
        return Answer(request, message, error);
    }

    private RpcResponse Answer(RpcRequest request, string? message, RpcError? error)
    {
        var response = new RpcResponse { Correlation = request.Correlation ?? new CorrelationMetadata() };
        if (error is not null)
        {
            response.Status = RpcStatus.Error;
            response.Error = error;
            return response;
        }

        var id = request.Target[TargetPrefix.Length..];
        var snapshot = _directory.Find(id);
        response.Status = RpcStatus.Ok;
        response.Payload = new LifecycleResponse
        {
            CollectorId = id,
            State = snapshot?.State.ToString() ?? string.Empty,
            Pid = (uint)Math.Max(0, snapshot?.Pid ?? 0),
            RestartCount = (uint)(snapshot?.Restarts ?? 0),
            Message = message ?? string.Empty,
        }.ToByteString();
        return response;
    }

    /// <summary>
    /// The one lifecycle implementation. A supervised collector: its runner starts, stops (a requested
    /// stop is never restarted) or restarts it (not counted as a restart after a crash). A collector
    /// started elsewhere can only be asked to stop (the Stop RPC goes to it); it cannot be started here.
    /// </summary>
    private async Task<(string Message, RpcError? Error)> LifecycleAsync(string id, RpcOperation operation, bool graceful, CorrelationMetadata? parent, CancellationToken cancellationToken)
    {
        if (_runners.TryGetValue(id, out var runner))
        {
            switch (operation)
            {
                case RpcOperation.Start:
                    return (await runner.StartAsync("started by the operator", parent, cancellationToken), null);
                case RpcOperation.Stop:
                    return (await runner.StopAsync(graceful, "stopped by the operator", parent, cancellationToken), null);
                case RpcOperation.Restart:
                    await runner.StopAsync(graceful, "restarting on the operator's request", parent, cancellationToken);
                    return (await runner.StartAsync("restarted by the operator", parent, cancellationToken), null);
            }
        }
        else if (_directory.Find(id) is { Presence: not null })
        {
            if (operation == RpcOperation.Stop)
            {
                var stop = await _rpc.CallAsync(id, RpcOperation.Stop, new StopRequest { Graceful = graceful }.ToByteString(), _options.GracefulShutdownTimeout, parent, cancellationToken);
                return stop.Status == RpcStatus.Ok
                    ? ($"asked collector '{id}' to stop; it was not started by this agent, which will not restart it", null)
                    : (string.Empty, stop.Error);
            }

            return (string.Empty, Error(RpcErrorKind.InvalidOperation,
                $"collector '{id}' was not started by this agent (it is not in the configuration), so the agent cannot {operation.ToString().ToLowerInvariant()} it; it can only be stopped"));
        }
        else
        {
            return (string.Empty, NotFound(id));
        }

        return (string.Empty, Error(RpcErrorKind.InvalidOperation, $"{operation} is not a lifecycle operation; allowed: Start, Stop, Restart"));
    }

    private RpcError NotFound(string id)
    {
        var known = KnownIds().ToList();
        return Error(RpcErrorKind.NotFound, $"no collector '{id}'; known collectors: {(known.Count == 0 ? "none" : string.Join(", ", known))}");
    }

    /// <summary>A collector accepted settings through UpdateConfig: announced on control.collector.config.</summary>
    public void OnConfigurationApplied(string collectorId, RpcRequest request, RpcResponse response)
    {
        UpdateConfigRequest update;
        try
        {
            update = UpdateConfigRequest.Parser.ParseFrom(request.Payload);
        }
        catch (InvalidProtocolBufferException)
        {
            return;
        }

        if (update.Settings.Count == 0)
        {
            return; // A read, not a change.
        }

        var announcement = new ConfigChanged { CollectorId = collectorId, RequestCorrelationId = request.Correlation?.CorrelationId ?? string.Empty };
        announcement.Changed.Add(update.Settings);
        try
        {
            announcement.Settings.Add(UpdateConfigResponse.Parser.ParseFrom(response.Payload).Settings);
        }
        catch (InvalidProtocolBufferException)
        {
            // A collector that answers something else reports no settings.
        }

        var settings = string.Join(", ", update.Settings.Select(kv => $"{kv.Key}={kv.Value}"));
        LogConfigApplied(_logger, collectorId, settings);
        _ = AnnounceAsync(announcement, request.Correlation);
    }

    private async Task AnnounceAsync(ConfigChanged announcement, CorrelationMetadata? parent)
    {
        try
        {
            await _publisher.PublishAsync(ConfigTopic, announcement.ToByteString(), ConfigContentType, Gateway.Rpc.Correlation.ChildOf(parent));
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            LogAnnounceFailed(_logger, announcement.CollectorId, ex);
        }
    }

    [LoggerMessage(EventId = 4210, Level = LogLevel.Information, Message = "RPC {Operation} of collector {CollectorId} ({CorrelationId}, graceful: {Graceful}): executing")]
    private static partial void LogLifecycleRpc(ILogger logger, RpcOperation operation, string collectorId, Untrusted correlationId, bool graceful);

    [LoggerMessage(EventId = 4211, Level = LogLevel.Information, Message = "Collector {CollectorId} applied settings: {Settings}")]
    private static partial void LogConfigApplied(ILogger logger, string collectorId, Untrusted settings);

    [LoggerMessage(EventId = 4212, Level = LogLevel.Warning, Message = "Collector {CollectorId}: could not announce its configuration change")]
    private static partial void LogAnnounceFailed(ILogger logger, string collectorId, Exception exception);
}
