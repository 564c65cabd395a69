using System.Globalization;
using DaemonEye.Gateway.Collectors;
using DaemonEye.Gateway.Rpc;

namespace DaemonEye.Coordination;

/// <summary>Instances: collectors connecting and leaving, liveness from the collector directory, health-check results.</summary>
internal sealed partial class TaskCoordinator
{
    public void OnCollectorConnected(CollectorPresence presence)
    {
        ArgumentNullException.ThrowIfNull(presence);
        var taskTypes = new HashSet<string>(StringComparer.Ordinal);
        var capacity = _options.DefaultCapacity;
        foreach (var capability in presence.Capabilities)
        {
            if (capability.StartsWith("task:", StringComparison.Ordinal) && capability.Length > 5)
            {
                taskTypes.Add(capability[5..]);
            }
            else if (capability.StartsWith("capacity:", StringComparison.Ordinal)
                && int.TryParse(capability.AsSpan(9), NumberStyles.None, CultureInfo.InvariantCulture, out var declared) && declared > 0)
            {
                capacity = declared;
            }
        }

        var type = _configuredTypes.TryGetValue(presence.CollectorId, out var configured) ? configured : presence.CollectorId;
        List<Attempt> sends;
        lock (_gate)
        {
            _instances[presence.CollectorId] = new Instance(presence.CollectorId, type, taskTypes, capacity, presence.ConnectionId);
            sends = PumpLocked();
        }

        var executes = taskTypes.Count == 0 ? "no task types" : string.Join(' ', taskTypes.Order(StringComparer.Ordinal));
        LogInstance(_logger, presence.CollectorId, type, capacity, executes);
        Start(sends);
    }

    public void OnCollectorDisconnected(string collectorId, long connectionId)
    {
        lock (_gate)
        {
            // Its pending calls fail with CommunicationError from the router; that puts them back in the queue.
            if (_instances.TryGetValue(collectorId, out var instance) && instance.ConnectionId == connectionId)
            {
                _instances.Remove(collectorId);
            }
        }
    }

    /// <summary>
    /// The collector directory's liveness rule (one timer for the agent): an instance silent for three
    /// heartbeat intervals is unhealthy and its assignments move to others; a heartbeat brings it back.
    /// </summary>
    public void OnCollectorLivenessChanged(string collectorId, CollectorHealthState before, CollectorHealthState after)
    {
        var lost = after == CollectorHealthState.Unhealthy;
        List<Attempt>? sends = null;
        var stillFailing = false;
        lock (_gate)
        {
            if (_instances.TryGetValue(collectorId, out var instance) && instance.HeartbeatsLost != lost)
            {
                instance.HeartbeatsLost = lost;
                stillFailing = instance.HealthCheckFailing;
                if (lost)
                {
                    RequeueLocked(instance, $"instance '{collectorId}' lost its heartbeats");
                }

                sends = PumpLocked();
            }
        }

        if (sends is null)
        {
            return;
        }

        if (lost)
        {
            LogUnhealthy(_logger, collectorId, (_heartbeatInterval * 3).TotalSeconds);
        }
        else
        {
            LogRecovered(_logger, collectorId, stillFailing ? "sends heartbeats again but still fails its health check: unhealthy" : "sends heartbeats again: healthy");
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
        List<Attempt>? sends = null;
        var heartbeatsLost = false;
        lock (_gate)
        {
            if (_instances.TryGetValue(collectorId, out var instance) && instance.HealthCheckFailing == healthy)
            {
                instance.HealthCheckFailing = !healthy;
                heartbeatsLost = instance.HeartbeatsLost;
                if (!healthy)
                {
                    RequeueLocked(instance, $"instance '{collectorId}' failed its health check: {detail}");
                }

                sends = PumpLocked();
            }
        }

        if (sends is null)
        {
            return;
        }

        if (healthy)
        {
            LogRecovered(_logger, collectorId, heartbeatsLost ? "passes its health check again but sends no heartbeats: unhealthy" : "passes its health check again: healthy");
        }
        else
        {
            LogHealthCheckFailed(_logger, collectorId, detail);
        }

        Start(sends);
    }

    /// <summary>Puts the assignments <paramref name="instance"/> is working on back in the queue. Call under the lock.</summary>
    private void RequeueLocked(Instance instance, string reason)
    {
        foreach (var attempt in instance.Attempts)
        {
            var assignment = attempt.Assignment;
            if (ReferenceEquals(assignment.Current, attempt) && !assignment.Resolved && !assignment.Run.Done)
            {
                // Its call stays pending (and counts against the instance's capacity) until it
                // answers or times out; an answer that still comes is a counted duplicate.
                assignment.Current = null;
                assignment.LastFailure = reason;
                _queue.Add(assignment);
            }
        }
    }
}
