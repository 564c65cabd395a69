using System.Collections.Concurrent;
using DaemonEye.Configuration;
using DaemonEye.Gateway;
using DaemonEye.Gateway.Rpc;
using DaemonEye.Grains;
using DaemonEye.Logging;
using DaemonEye.Protocol.Collector.V1;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.V1;
using Google.Protobuf;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DaemonEye.Supervision;

/// <summary>
/// The agent's process manager: starts the enabled collectors of the configuration, keeps each
/// collector grain's state and health current (heartbeats, periodic HealthCheck RPCs), and carries
/// out the operator's start / stop / restart / health commands.
/// </summary>
internal sealed partial class CollectorSupervisor : IHostedService, ICollectorPresenceObserver, IAgentControl, IDisposable
{
    private readonly Dictionary<string, CollectorRunner> _runners;
    private readonly ConcurrentDictionary<string, CollectorPresence> _external = new(StringComparer.Ordinal);
    private readonly ProcessManagerOptions _options;
    private readonly IAgentRpc _rpc;
    private readonly IGrainFactory _grains;
    private readonly TimeProvider _time;
    private readonly ILogger<CollectorSupervisor> _logger;
    private readonly ProcessLauncher _launcher;
    private readonly IBusPublisher _publisher;
    private readonly CollectorPresenceHub _presence;
    private readonly ConcurrentDictionary<string, CollectorHealthState> _lastHealth = new(StringComparer.Ordinal);
    private ITimer? _healthTimer;
    private DateTimeOffset _lastHealthCheck;
    private DateTimeOffset _lastExternalHealthCheck;
    private readonly TimeSpan _externalHealthCheckInterval;

    public CollectorSupervisor(
        IOptions<ProcessManagerOptions> options,
        IOptions<List<CollectorDefinition>> collectors,
        IOptions<RpcOptions> rpcOptions,
        BusEndpoint bus,
        IAgentRpc rpc,
        IGrainFactory grains,
        IBusPublisher publisher,
        TimeProvider time,
        ProcessLauncher launcher,
        CollectorPresenceHub presence,
        ILogger<CollectorSupervisor> logger)
    {
        _options = options.Value;
        _externalHealthCheckInterval = TimeSpan.FromSeconds(rpcOptions.Value.HealthCheckIntervalSeconds);
        _rpc = rpc;
        _grains = grains;
        _time = time;
        _logger = logger;
        _launcher = launcher;
        _publisher = publisher;
        _presence = presence;
        presence.Attach(this);
        var environment = new Dictionary<string, string>
        {
            ["DAEMONEYE_BROKER__SOCKET_PATH"] = bus.SocketPath,
            ["DAEMONEYE_SUPERVISOR_PID"] = Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["DAEMONEYE_HEARTBEAT_INTERVAL_MS"] = ((long)_options.HeartbeatInterval.TotalMilliseconds).ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        _runners = collectors.Value.ToDictionary(
            d => d.Id,
            d => new CollectorRunner(d, new SupervisorContext(_options, launcher, rpc, grains, publisher, time, logger,
                new Dictionary<string, string>(environment) { ["DAEMONEYE_COLLECTOR_ID"] = d.Id })),
            StringComparer.Ordinal);
    }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        _lastHealthCheck = _time.GetUtcNow();
        _lastExternalHealthCheck = _lastHealthCheck;
        _healthTimer = _time.CreateTimer(_ => _ = CheckHealthAsync(), null, _options.HeartbeatInterval, _options.HeartbeatInterval);
        foreach (var runner in _runners.Values)
        {
            await _grains.GetGrain<ICollectorGrain>(runner.Id).Transition(
                runner.Definition.Enabled ? CollectorLifecycle.Registered : CollectorLifecycle.Stopped, 0,
                runner.Definition.Enabled ? "configured" : "configured with enabled: false", _time.GetUtcNow());
            if (runner.Definition.Enabled)
            {
                // Start-up of one collector must not hold up the agent or the others.
                _ = StartInBackgroundAsync(runner);
            }
        }
    }

    private async Task StartInBackgroundAsync(CollectorRunner runner)
    {
        try
        {
            var outcome = await runner.StartAsync("started with the agent", null, CancellationToken.None);
            LogStartOutcome(_logger, runner.Id, outcome);
        }
        catch (Exception ex)
        {
            LogStartFailed(_logger, runner.Id, ex);
        }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        _healthTimer?.Dispose();
        var stops = _runners.Values.Select(r => r.StopAsync(graceful: true, "the agent is shutting down", null, CancellationToken.None));
        try
        {
            await Task.WhenAll(stops).WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            // The host's shutdown timeout ran out: kill what is left rather than leave orphans.
            foreach (var runner in _runners.Values)
            {
                Signals.Send(runner.Pid, Signals.SigKill);
            }
        }
    }

    /// <summary>
    /// Judges every collector's health from its heartbeats, and asks it over RPC (HealthCheck): the
    /// collectors this agent supervises every process_manager.health_check_interval_seconds, collectors
    /// registered on the bus but started elsewhere every rpc.health_check_interval_seconds.
    /// </summary>
    internal async Task CheckHealthAsync()
    {
        var now = _time.GetUtcNow();
        var supervisedDue = now - _lastHealthCheck >= _options.HealthCheckInterval;
        if (supervisedDue)
        {
            _lastHealthCheck = now;
        }

        var externalDue = now - _lastExternalHealthCheck >= _externalHealthCheckInterval;
        if (externalDue)
        {
            _lastExternalHealthCheck = now;
        }

        foreach (var id in KnownIds())
        {
            try
            {
                var snapshot = await _grains.GetGrain<ICollectorGrain>(id).EvaluateHealth(now, _options.HeartbeatInterval);
                if (_lastHealth.TryGetValue(id, out var previous) ? previous != snapshot.Health : snapshot.Health != CollectorHealthState.Unknown)
                {
                    _lastHealth[id] = snapshot.Health;
                    await PublishStatusAsync(snapshot);
                }

                var rpcDue = _runners.ContainsKey(id) ? supervisedDue : externalDue;
                if (rpcDue && snapshot.State == CollectorLifecycle.Running && _rpc.FindCollector(id) is not null)
                {
                    var response = await _rpc.CallAsync(id, RpcOperation.HealthCheck, timeout: _options.HeartbeatInterval * 3);
                    ReportHealthCheck(id, response);
                }
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                LogHealthEvaluationFailed(_logger, id, ex);
            }
        }
    }

    /// <summary>Logs a failed or unhealthy HealthCheck and tells the presence observers (the task coordinator
    /// takes an instance that fails it out of rotation until one passes).</summary>
    private void ReportHealthCheck(string id, RpcResponse response)
    {
        if (response.Status != RpcStatus.Ok)
        {
            var kind = response.Error?.Kind ?? RpcErrorKind.Unspecified;
            var message = response.Error?.Message ?? string.Empty;
            LogHealthCheckFailed(_logger, id, kind, message);
            _presence.ReportHealthCheck(id, healthy: false, $"the HealthCheck call failed ({kind}): {message}");
            return;
        }

        HealthCheckResponse health;
        try
        {
            health = HealthCheckResponse.Parser.ParseFrom(response.Payload);
        }
        catch (InvalidProtocolBufferException ex)
        {
            LogHealthCheckFailed(_logger, id, RpcErrorKind.ExecutionError, ex.Message);
            _presence.ReportHealthCheck(id, healthy: false, $"the HealthCheck answer is not a HealthCheckResponse: {ex.Message}");
            return;
        }

        if (!health.Healthy)
        {
            LogHealthCheckUnhealthy(_logger, id, health.Status);
        }

        _presence.ReportHealthCheck(id, health.Healthy, health.Healthy ? health.Status : $"it reports unhealthy: {health.Status}");
    }

    public void OnCollectorHealthChecked(string collectorId, bool healthy, string detail)
    {
        // The supervisor is the one reporting; the collector's health shown to the operator stays heartbeat-based.
    }

    public const string StatusTopic = "control.health.status";
    public const string StatusContentType = "application/x-protobuf; messageType=daemoneye.ipc.v1.CollectorStatus";

    /// <summary>Publishes a collector's status on control.health.status when its health changes.</summary>
    private Task PublishStatusAsync(CollectorSnapshot snapshot) =>
        _publisher.PublishAsync(StatusTopic, Google.Protobuf.MessageExtensions.ToByteString(ToStatus(snapshot)), StatusContentType, Correlation.ChildOf(null));

    private IEnumerable<string> KnownIds() => _runners.Keys.Concat(_external.Keys.Where(k => !_runners.ContainsKey(k))).Distinct().Order(StringComparer.Ordinal);

    public void OnCollectorConnected(CollectorPresence presence)
    {
        var grain = _grains.GetGrain<ICollectorGrain>(presence.CollectorId);
        _ = grain.SetCapabilities([.. presence.Capabilities]);
        if (_runners.TryGetValue(presence.CollectorId, out var runner))
        {
            runner.OnRegistered(presence);
            return;
        }

        // A collector the agent did not start (run by hand or by another supervisor).
        _external[presence.CollectorId] = presence;
        _ = RecordExternalAsync(presence.CollectorId, CollectorLifecycle.Running, presence.Pid, "registered on the bus; not started by this agent");
    }

    /// <summary>Records a state change of a collector the agent did not start, and publishes it like any other.</summary>
    private async Task RecordExternalAsync(string id, CollectorLifecycle state, int pid, string reason)
    {
        try
        {
            var transition = await _grains.GetGrain<ICollectorGrain>(id).Transition(state, pid, reason, _time.GetUtcNow());
            var lifecycle = new LifecycleEvent
            {
                CollectorId = id,
                State = state.ToString(),
                PreviousState = transition.Before.State.ToString(),
                Pid = (uint)Math.Max(0, pid),
                Reason = reason,
            };
            await _publisher.PublishAsync(CollectorRunner.LifecycleTopic, lifecycle.ToByteString(), CollectorRunner.LifecycleContentType, Correlation.ChildOf(null));
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            LogExternalFailed(_logger, id, ex);
        }
    }

    public void OnCollectorDisconnected(string collectorId, long connectionId)
    {
        if (_external.TryRemove(collectorId, out _))
        {
            _ = RecordExternalAsync(collectorId, CollectorLifecycle.Stopped, 0, "disconnected from the bus");
        }
    }

    public void OnCollectorHeartbeat(string collectorId) =>
        _ = _grains.GetGrain<ICollectorGrain>(collectorId).RecordHeartbeat(_time.GetUtcNow());

    public async Task<IReadOnlyList<CollectorStatus>> ListCollectorsAsync(CancellationToken cancellationToken)
    {
        var list = new List<CollectorStatus>();
        var now = _time.GetUtcNow();
        foreach (var id in KnownIds())
        {
            var snapshot = await _grains.GetGrain<ICollectorGrain>(id).EvaluateHealth(now, _options.HeartbeatInterval).WaitAsync(cancellationToken);
            var status = ToStatus(snapshot);
            if (status.State != CollectorState.Running && _runners.TryGetValue(id, out var runner) && runner.IsRecovering)
            {
                // Exited unexpectedly and not back yet (crash-looping): not working, whatever the grain last knew.
                status.Health = CollectorHealth.Unhealthy;
            }

            list.Add(status);
        }

        return list;
    }

    public async Task<(CollectorCommandResponse? Response, RpcError? Error)> ExecuteAsync(CollectorCommand command, CorrelationMetadata? parent, CancellationToken cancellationToken)
    {
        var id = command.Id;
        _runners.TryGetValue(id, out var runner);
        if (runner is null && !_external.ContainsKey(id))
        {
            var known = KnownIds().ToList();
            return (null, new RpcError
            {
                Kind = RpcErrorKind.NotFound,
                Message = $"no collector '{id}'; known collectors: {(known.Count == 0 ? "none" : string.Join(", ", known))}",
            });
        }

        string message;
        HealthCheckResponse? health = null;
        switch (command.Action)
        {
            case CollectorAction.Start when runner is not null:
                message = await runner.StartAsync("started by the operator", parent, cancellationToken);
                break;
            case CollectorAction.Stop when runner is not null:
                message = await runner.StopAsync(command.Graceful, "stopped by the operator", parent, cancellationToken);
                break;
            case CollectorAction.Restart when runner is not null:
                await runner.StopAsync(command.Graceful, "restarting on the operator's request", parent, cancellationToken);
                message = await runner.StartAsync("restarted by the operator", parent, cancellationToken);
                break;
            case CollectorAction.Health:
                var timeout = command.TimeoutMs > 0 ? TimeSpan.FromMilliseconds(command.TimeoutMs) : (TimeSpan?)null;
                var response = await _rpc.CallAsync(id, RpcOperation.HealthCheck, timeout: timeout, parent: parent, cancellationToken: cancellationToken);
                if (response.Status != RpcStatus.Ok)
                {
                    return (null, response.Error);
                }

                health = HealthCheckResponse.Parser.ParseFrom(response.Payload);
                message = health.Healthy ? $"collector '{id}' is healthy: {health.Status}" : $"collector '{id}' reports unhealthy: {health.Status}";
                break;
            case CollectorAction.Start or CollectorAction.Stop or CollectorAction.Restart:
                return (null, new RpcError
                {
                    Kind = RpcErrorKind.InvalidOperation,
                    Message = $"collector '{id}' was not started by this agent (it is not in the configuration), so the agent cannot {command.Action.ToString().ToLowerInvariant()} it",
                });
            default:
                return (null, new RpcError { Kind = RpcErrorKind.InvalidOperation, Message = $"action {command.Action} is not one of start, stop, restart, health" });
        }

        var snapshot = await _grains.GetGrain<ICollectorGrain>(id).EvaluateHealth(_time.GetUtcNow(), _options.HeartbeatInterval);
        return (new CollectorCommandResponse { Collector = ToStatus(snapshot), Health = health, Message = message }, null);
    }

    private CollectorStatus ToStatus(CollectorSnapshot snapshot)
    {
        _runners.TryGetValue(snapshot.Id, out var runner);
        var status = new CollectorStatus
        {
            Id = snapshot.Id,
            State = snapshot.State switch
            {
                CollectorLifecycle.Registered => CollectorState.Registered,
                CollectorLifecycle.Starting => CollectorState.Starting,
                CollectorLifecycle.Running => CollectorState.Running,
                CollectorLifecycle.Stopping => CollectorState.Stopping,
                CollectorLifecycle.Stopped => CollectorState.Stopped,
                _ => CollectorState.Failed,
            },
            Health = snapshot.Health switch
            {
                CollectorHealthState.Healthy => CollectorHealth.Healthy,
                CollectorHealthState.Degraded => CollectorHealth.Degraded,
                CollectorHealthState.Unhealthy => CollectorHealth.Unhealthy,
                _ => CollectorHealth.Unknown,
            },
            Pid = (uint)Math.Max(0, snapshot.Pid),
            Restarts = (uint)snapshot.Restarts,
            LastHeartbeatUnixNanos = snapshot.LastHeartbeat is { } hb ? UnixTime.ToNanos(hb) : 0,
            Enabled = runner?.Definition.Enabled ?? true,
            Executable = runner?.Definition.Executable ?? string.Empty,
            Reason = snapshot.Reason,
        };
        status.Capabilities.AddRange(snapshot.Capabilities);
        return status;
    }

    public void Dispose()
    {
        _healthTimer?.Dispose();
        _launcher.Dispose();
    }

    [LoggerMessage(EventId = 4200, Level = LogLevel.Information, Message = "Collector {CollectorId}: {Outcome}")]
    private static partial void LogStartOutcome(ILogger logger, string collectorId, string outcome);

    [LoggerMessage(EventId = 4201, Level = LogLevel.Error, Message = "Collector {CollectorId} could not be started")]
    private static partial void LogStartFailed(ILogger logger, string collectorId, Exception exception);

    [LoggerMessage(EventId = 4202, Level = LogLevel.Warning, Message = "Collector {CollectorId} failed its health check ({Kind}): {Message}")]
    private static partial void LogHealthCheckFailed(ILogger logger, string collectorId, RpcErrorKind kind, Untrusted message);

    [LoggerMessage(EventId = 4205, Level = LogLevel.Warning, Message = "Collector {CollectorId} answered its health check unhealthy: {Status}")]
    private static partial void LogHealthCheckUnhealthy(ILogger logger, string collectorId, Untrusted status);

    [LoggerMessage(EventId = 4204, Level = LogLevel.Warning, Message = "Collector {CollectorId} (not started by this agent): recording its state failed")]
    private static partial void LogExternalFailed(ILogger logger, string collectorId, Exception exception);

    [LoggerMessage(EventId = 4203, Level = LogLevel.Warning, Message = "Collector {CollectorId}: health evaluation failed")]
    private static partial void LogHealthEvaluationFailed(ILogger logger, string collectorId, Exception exception);
}
