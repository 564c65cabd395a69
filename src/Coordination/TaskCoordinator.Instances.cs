using DaemonEye.Gateway.Collectors;
using DaemonEye.Gateway.Rpc;
using DaemonEye.Logging;
using Microsoft.Extensions.Logging;

namespace DaemonEye.Coordination;

/// <summary>
/// Instances coming, going, falling silent or failing their HealthCheck: the collector directory
/// tells (this class observes it); what it means for the assignments in flight is decided here.
/// </summary>
internal sealed partial class TaskCoordinator
{
    public void OnCollectorConnected(CollectorPresence presence)
    {
        ArgumentNullException.ThrowIfNull(presence);
        List<Attempt> sends;
        InstanceView? view;
        lock (_gate)
        {
            view = _picker.Instances().Find(i => string.Equals(i.Id, presence.CollectorId, StringComparison.Ordinal));
            sends = PumpLocked();
        }

        if (view is not null)
        {
            var executes = view.TaskTypes.Count == 0 ? "no task types" : string.Join(' ', view.TaskTypes.Order(StringComparer.Ordinal));
            LogInstance(_logger, presence.CollectorId, view.Type, view.Capacity, executes);
        }

        Start(sends);
        InstancesChanged?.Invoke();
    }

    public void OnCollectorDisconnected(string collectorId, long connectionId)
    {
        // Its pending calls fail with CommunicationError from the router; that puts them back in the queue.
        InstancesChanged?.Invoke();
    }

    /// <summary>
    /// The collector directory's liveness rule: an instance silent for three heartbeat intervals is
    /// unhealthy and its assignments move to others; a heartbeat brings it back.
    /// </summary>
    public void OnCollectorLivenessChanged(string collectorId, CollectorHealthState before, CollectorHealthState after)
    {
        var lost = after == CollectorHealthState.Unhealthy;
        if (lost == (before == CollectorHealthState.Unhealthy))
        {
            return;
        }

        List<Attempt> sends;
        lock (_gate)
        {
            if (lost)
            {
                RequeueLocked(collectorId, $"instance '{collectorId}' lost its heartbeats");
            }

            sends = PumpLocked();
        }

        if (lost)
        {
            LogUnhealthy(_logger, collectorId, (_heartbeatInterval * 3).TotalSeconds);
        }
        else
        {
            LogRecovered(_logger, collectorId, "sends heartbeats again");
        }

        Start(sends);
    }

    /// <summary>
    /// The supervisor's periodic HealthCheck: an instance that fails it (answers unhealthy, or the call
    /// fails) is out of rotation and its assignments move to others, until a HealthCheck passes again.
    /// Heartbeats alone do not bring it back: a collector whose work is stuck may still send them.
    /// </summary>
    public void OnCollectorHealthChecked(string collectorId, bool healthy, string detail)
    {
        List<Attempt> sends;
        var moved = 0;
        lock (_gate)
        {
            if (!healthy)
            {
                moved = RequeueLocked(collectorId, $"instance '{collectorId}' failed its health check: {detail}");
            }

            sends = PumpLocked();
        }

        if (!healthy && moved > 0)
        {
            LogHealthCheckFailed(_logger, collectorId, detail);
        }

        Start(sends);
    }

    /// <summary>Puts the assignments <paramref name="instanceId"/> is working on back in the queue. Call under the lock.</summary>
    private int RequeueLocked(string instanceId, string reason)
    {
        var moved = 0;
        foreach (var attempt in _picker.AttemptsOf(instanceId))
        {
            var assignment = attempt.Assignment;
            if (ReferenceEquals(assignment.Current, attempt) && !assignment.Resolved && !assignment.Run.Done)
            {
                // Its call stays pending (and counts against the instance's capacity) until it
                // answers or times out; an answer that still comes is a counted duplicate.
                assignment.Current = null;
                assignment.LastFailure = reason;
                _queue.Enqueue(assignment);
                moved++;
            }
        }

        return moved;
    }

    [LoggerMessage(EventId = 5002, Level = LogLevel.Information, Message = "Collector instance {InstanceId} (type {Type}, capacity {Capacity}) executes: {TaskTypes}")]
    private static partial void LogInstance(ILogger logger, string instanceId, string type, int capacity, Untrusted taskTypes);

    [LoggerMessage(EventId = 5003, Level = LogLevel.Warning, Message = "Collector instance {InstanceId} sent no heartbeat for {Seconds} s: unhealthy; its tasks move to other instances")]
    private static partial void LogUnhealthy(ILogger logger, string instanceId, double seconds);

    [LoggerMessage(EventId = 5004, Level = LogLevel.Information, Message = "Collector instance {InstanceId} {What}")]
    private static partial void LogRecovered(ILogger logger, string instanceId, string what);

    [LoggerMessage(EventId = 5007, Level = LogLevel.Warning, Message = "Collector instance {InstanceId} failed its health check: {Detail}; out of rotation, its tasks move to other instances")]
    private static partial void LogHealthCheckFailed(ILogger logger, string instanceId, Untrusted detail);
}
