using Microsoft.Extensions.Logging;

namespace DaemonEye.Grains;

/// <summary>
/// The agent's record of one collector. Kept alive for the agent's lifetime (it is the only copy of
/// the collector's history: restarts, last heartbeat).
/// </summary>
[KeepAlive]
internal sealed partial class CollectorGrain(ILogger<CollectorGrain> logger) : Grain, ICollectorGrain
{
    private CollectorSnapshot _snapshot = null!;

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        _snapshot = new CollectorSnapshot(this.GetPrimaryKeyString(), CollectorLifecycle.Registered, CollectorHealthState.Unknown, 0, 0, null, [], "configured", DateTimeOffset.MinValue);
        return Task.CompletedTask;
    }

    public Task<CollectorTransition> Transition(CollectorLifecycle state, int pid, string reason, DateTimeOffset at)
    {
        var before = _snapshot;
        var health = state == CollectorLifecycle.Running
            ? (before.State == CollectorLifecycle.Running ? before.Health : CollectorHealthState.Healthy)
            : CollectorHealthState.Unknown;
        var lastHeartbeat = state == CollectorLifecycle.Starting ? null : before.LastHeartbeat;
        _snapshot = before with { State = state, Pid = pid, Reason = reason, StateSince = at, Health = health, LastHeartbeat = lastHeartbeat };
        if (before.State != state)
        {
            var correlationId = RequestContext.Get(CollectorGrainContext.CorrelationIdKey) as string;
            // A collector that gave up (Failed) is an error: `journalctl -p err` shows it.
            LogTransition(logger, state == CollectorLifecycle.Failed ? LogLevel.Error : LogLevel.Information, before.Id, before.State, state, pid, reason, string.IsNullOrEmpty(correlationId) ? "-" : correlationId);
        }

        return Task.FromResult(new CollectorTransition(before, _snapshot));
    }

    public Task RecordHeartbeat(DateTimeOffset at)
    {
        if (_snapshot.LastHeartbeat is null || at > _snapshot.LastHeartbeat)
        {
            _snapshot = _snapshot with { LastHeartbeat = at };
        }

        return Task.CompletedTask;
    }

    public Task SetCapabilities(string[] capabilities)
    {
        _snapshot = _snapshot with { Capabilities = capabilities };
        return Task.CompletedTask;
    }

    public Task SetRestarts(int restarts)
    {
        _snapshot = _snapshot with { Restarts = restarts };
        return Task.CompletedTask;
    }

    public Task<CollectorSnapshot> EvaluateHealth(DateTimeOffset now, TimeSpan interval)
    {
        if (_snapshot.State != CollectorLifecycle.Running)
        {
            return Task.FromResult(_snapshot);
        }

        // Before the first heartbeat, the clock starts when the collector became Running.
        var since = _snapshot.LastHeartbeat ?? _snapshot.StateSince;
        var silent = now - since;
        var health = silent > interval * 3 ? CollectorHealthState.Unhealthy
            : silent > interval ? CollectorHealthState.Degraded
            : CollectorHealthState.Healthy;
        if (health != _snapshot.Health)
        {
            LogHealth(logger, _snapshot.Id, _snapshot.Health, health, silent.TotalSeconds);
            _snapshot = _snapshot with { Health = health };
        }

        return Task.FromResult(_snapshot);
    }

    public Task<CollectorSnapshot> GetSnapshot() => Task.FromResult(_snapshot);

    [LoggerMessage(EventId = 1200, Message = "Collector {CollectorId}: {From} -> {To} (pid {Pid}): {Reason} (correlation {CorrelationId})")]
    private static partial void LogTransition(ILogger logger, LogLevel level, string collectorId, CollectorLifecycle from, CollectorLifecycle to, int pid, string reason, string correlationId);

    [LoggerMessage(EventId = 1201, Level = LogLevel.Warning, Message = "Collector {CollectorId} health {From} -> {To}: no heartbeat for {Seconds:0.0} s")]
    private static partial void LogHealth(ILogger logger, string collectorId, CollectorHealthState from, CollectorHealthState to, double seconds);
}
