using System.Collections.Concurrent;
using DaemonEye.Configuration;
using DaemonEye.Gateway;
using DaemonEye.Gateway.Collectors;
using DaemonEye.Gateway.Rpc;
using DaemonEye.Logging;
using DaemonEye.Protocol.Collector.V1;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.V1;
using DaemonEye.Topics;
using Google.Protobuf;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DaemonEye.Supervision;

/// <summary>
/// The agent's process manager: starts the enabled collectors of the configuration, records their
/// lifecycle in the <see cref="CollectorDirectory"/> (the one collector model; liveness is judged
/// there), asks them for their health periodically (HealthCheck RPCs), and executes every Start,
/// Stop and Restart, whether it comes over IPC or as an RPC on the bus (<see cref="ICollectorController"/>).
/// </summary>
internal sealed partial class CollectorSupervisor : IHostedService, ICollectorPresenceObserver, IAgentControl, ICollectorController, IDisposable
{
    private readonly ConcurrentDictionary<string, CollectorRunner> _runners = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, CollectorPresence> _external = new(StringComparer.Ordinal);
    private readonly ProcessManagerOptions _options;
    private readonly IAgentRpc _rpc;
    private readonly CollectorDirectory _directory;
    private readonly Dictionary<string, string> _environment;
    private readonly TimeProvider _time;
    private readonly ILogger<CollectorSupervisor> _logger;
    private readonly ProcessLauncher _launcher;
    private readonly IBusPublisher _publisher;
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
        CollectorDirectory directory,
        IBusPublisher publisher,
        TimeProvider time,
        ProcessLauncher launcher,
        ILogger<CollectorSupervisor> logger)
    {
        _options = options.Value;
        _externalHealthCheckInterval = TimeSpan.FromSeconds(rpcOptions.Value.HealthCheckIntervalSeconds);
        _rpc = rpc;
        _directory = directory;
        _time = time;
        _logger = logger;
        _launcher = launcher;
        _publisher = publisher;
        directory.Attach(this);
        directory.AttachController(this);
        _environment = new Dictionary<string, string>
        {
            ["DAEMONEYE_BROKER__SOCKET_PATH"] = bus.SocketPath,
            ["DAEMONEYE_SUPERVISOR_PID"] = Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["DAEMONEYE_HEARTBEAT_INTERVAL_MS"] = ((long)_options.HeartbeatInterval.TotalMilliseconds).ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        foreach (var definition in collectors.Value)
        {
            _runners[definition.Id] = NewRunner(definition);
        }
    }

    private CollectorRunner NewRunner(CollectorDefinition definition)
    {
        _directory.Configure(definition.Id, definition.Enabled, definition.Executable);
        return new CollectorRunner(definition, new SupervisorContext(_options, _launcher, _rpc, _directory, _publisher, _time, _logger,
            new Dictionary<string, string>(_environment) { ["DAEMONEYE_COLLECTOR_ID"] = definition.Id }));
    }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        _lastHealthCheck = _time.GetUtcNow();
        _lastExternalHealthCheck = _lastHealthCheck;
        _healthTimer = _time.CreateTimer(_ => _ = CheckHealthAsync(), null, _options.HeartbeatInterval, _options.HeartbeatInterval);
        foreach (var runner in _runners.Values)
        {
            BeginSupervising(runner, "started with the agent");
        }

        await Task.CompletedTask;
    }

    /// <summary>Records a configured collector and, when enabled, starts it in the background.</summary>
    private void BeginSupervising(CollectorRunner runner, string reason)
    {
        _directory.Transition(runner.Id,
            runner.Definition.Enabled ? CollectorLifecycle.Registered : CollectorLifecycle.Stopped, 0,
            runner.Definition.Enabled ? "configured" : "configured with enabled: false");
        if (runner.Definition.Enabled)
        {
            // Start-up of one collector must not hold up the agent or the others.
            _ = StartInBackgroundAsync(runner, reason);
        }
    }

    private async Task StartInBackgroundAsync(CollectorRunner runner, string reason)
    {
        try
        {
            var outcome = await runner.StartAsync(reason, null, CancellationToken.None);
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
    /// Asks collectors for their health over RPC (HealthCheck): the collectors this agent supervises
    /// every process_manager.health_check_interval_seconds, collectors registered on the bus but
    /// started elsewhere every rpc.health_check_interval_seconds. (Heartbeats are judged by the
    /// collector directory, on its own timer.)
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

        foreach (var snapshot in _directory.List())
        {
            var rpcDue = snapshot.Supervised ? supervisedDue : externalDue;
            if (!rpcDue || snapshot.State != CollectorLifecycle.Running || snapshot.Presence is null)
            {
                continue;
            }

            try
            {
                var response = await _rpc.CallAsync(snapshot.Id, RpcOperation.HealthCheck, timeout: _options.HeartbeatInterval * 3);
                ReportHealthCheck(snapshot.Id, response);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                LogHealthEvaluationFailed(_logger, snapshot.Id, ex);
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
            _directory.ReportHealthCheck(id, healthy: false, $"the HealthCheck call failed ({kind}): {message}");
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
            _directory.ReportHealthCheck(id, healthy: false, $"the HealthCheck answer is not a HealthCheckResponse: {ex.Message}");
            return;
        }

        if (!health.Healthy)
        {
            LogHealthCheckUnhealthy(_logger, id, health.Status);
        }

        _directory.ReportHealthCheck(id, health.Healthy, health.Healthy ? health.Status : $"it reports unhealthy: {health.Status}");
    }

    public void OnCollectorHealthChecked(string collectorId, bool healthy, string detail)
    {
        // The supervisor is the one reporting; the collector's health shown to the operator stays heartbeat-based.
    }

    /// <summary>The directory's liveness rule changed a collector's health: published on control.health.status.</summary>
    public void OnCollectorLivenessChanged(string collectorId, CollectorHealthState before, CollectorHealthState after)
    {
        if (_directory.Find(collectorId) is { } snapshot)
        {
            _ = PublishStatusAsync(snapshot);
        }
    }

    public const string StatusTopic = WellKnownTopics.HealthStatus;
    public const string StatusContentType = "application/x-protobuf; messageType=daemoneye.ipc.v1.CollectorStatus";

    /// <summary>Publishes a collector's status on control.health.status when its health changes.</summary>
    private async Task PublishStatusAsync(CollectorSnapshot snapshot)
    {
        try
        {
            await _publisher.PublishAsync(StatusTopic, Google.Protobuf.MessageExtensions.ToByteString(ToStatus(snapshot)), StatusContentType, Correlation.ChildOf(null));
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            LogHealthEvaluationFailed(_logger, snapshot.Id, ex);
        }
    }

    private IEnumerable<string> KnownIds() => _directory.List().Select(s => s.Id);

    public void OnCollectorConnected(CollectorPresence presence)
    {
        if (_runners.TryGetValue(presence.CollectorId, out var runner))
        {
            runner.OnRegistered(presence);
            return;
        }

        // A collector the agent did not start (run by hand or by another supervisor).
        _external[presence.CollectorId] = presence;
        _ = RecordExternalAsync(presence.CollectorId, CollectorLifecycle.Running, CollectorLifecycle.Stopped, presence.Pid, "registered on the bus; not started by this agent");
    }

    /// <summary>Records a state change of a collector the agent did not start, and publishes it like any other.</summary>
    /// <remarks>Its state is its presence in the directory (Running while connected); this only announces the change.</remarks>
    private async Task RecordExternalAsync(string id, CollectorLifecycle state, CollectorLifecycle previous, int pid, string reason)
    {
        try
        {
            var lifecycle = new LifecycleEvent
            {
                CollectorId = id,
                State = state.ToString(),
                PreviousState = previous.ToString(),
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
            _ = RecordExternalAsync(collectorId, CollectorLifecycle.Stopped, CollectorLifecycle.Running, 0, "disconnected from the bus");
        }
    }

    public Task<IReadOnlyList<CollectorStatus>> ListCollectorsAsync(CancellationToken cancellationToken)
    {
        var list = new List<CollectorStatus>();
        foreach (var snapshot in _directory.List())
        {
            var status = ToStatus(snapshot);
            if (status.State != CollectorState.Running && _runners.TryGetValue(snapshot.Id, out var runner) && runner.IsRecovering)
            {
                // Exited unexpectedly and not back yet (crash-looping): not working, whatever was last recorded.
                status.Health = CollectorHealth.Unhealthy;
            }

            list.Add(status);
        }

        return Task.FromResult<IReadOnlyList<CollectorStatus>>(list);
    }

    private static CollectorStatus ToStatus(CollectorSnapshot snapshot)
    {
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
            Enabled = !snapshot.Supervised || snapshot.Enabled,
            Executable = snapshot.Executable,
            Reason = snapshot.Reason,
        };
        status.Capabilities.AddRange(snapshot.Capabilities);
        status.RefusedCapabilities.AddRange(snapshot.Refused.Select(r => new CapabilityRefusal { Capability = r.Capability, Reason = r.Reason }));
        return status;
    }

    public void Dispose()
    {
        _healthTimer?.Dispose();
        _launcher.Dispose();
    }

    private static RpcError Error(RpcErrorKind kind, string message) => new() { Kind = kind, Message = message };

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
