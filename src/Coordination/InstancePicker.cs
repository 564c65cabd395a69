using System.Globalization;
using DaemonEye.Gateway.Collectors;

namespace DaemonEye.Coordination;

/// <summary>A connected collector instance as the coordinator sees it: read from the collector directory, plus its load.</summary>
internal sealed record InstanceView(string Id, long ConnectionId, string Type, IReadOnlySet<string> TaskTypes, int Capacity, int InFlight, bool Healthy);

/// <summary>The assignments one connection of an instance holds (what counts against its capacity).</summary>
internal sealed class InstanceLoad(string id, long connectionId, string type)
{
    public string Id { get; } = id;

    public long ConnectionId { get; } = connectionId;

    public string Type { get; } = type;

    public int InFlight { get; set; }

    public HashSet<Attempt> Attempts { get; } = [];
}

/// <summary>
/// Chooses the instance for an assignment: round-robin over the instances of the assignment's type
/// that declare <c>task:&lt;type&gt;</c>, skipping unhealthy ones and those at their declared
/// <c>capacity:&lt;n&gt;</c>. Which instances exist, what they declared and whether they are healthy
/// (liveness from heartbeats, the supervisor's last HealthCheck) is read from the one collector model,
/// <see cref="CollectorDirectory"/>, every time; the picker only keeps what is its own: the round-robin
/// cursors and the assignments in flight per connection. Not thread-safe: the coordinator holds its lock.
/// </summary>
internal sealed class InstancePicker(CollectorDirectory directory, IReadOnlyDictionary<string, string> configuredTypes, int defaultCapacity)
{
    private readonly Dictionary<string, int> _cursors = new(StringComparer.Ordinal);
    private readonly Dictionary<(string Id, long Connection), InstanceLoad> _loads = [];

    /// <summary>Every connected instance, by id.</summary>
    public List<InstanceView> Instances()
    {
        var instances = new List<InstanceView>();
        foreach (var collector in directory.List())
        {
            if (collector.Presence is not { } presence)
            {
                continue;
            }

            var taskTypes = new HashSet<string>(StringComparer.Ordinal);
            var capacity = defaultCapacity;
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

            var healthy = collector.Health != CollectorHealthState.Unhealthy && collector.FailingHealthCheck is null;
            var inFlight = _loads.TryGetValue((collector.Id, presence.ConnectionId), out var load) ? load.InFlight : 0;
            instances.Add(new InstanceView(collector.Id, presence.ConnectionId, TypeOf(collector.Id), taskTypes, capacity, inFlight, healthy));
        }

        return instances;
    }

    /// <summary>The collector type of an instance: its <c>collectors</c> entry's type, else its id.</summary>
    public string TypeOf(string instanceId) => configuredTypes.TryGetValue(instanceId, out var configured) ? configured : instanceId;

    /// <summary>The collector types whose connected instances execute <paramref name="taskType"/>, sorted.</summary>
    public List<string> TypesOffering(string taskType) =>
        [.. Instances().Where(i => i.TaskTypes.Contains(taskType)).Select(i => i.Type).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)];

    /// <summary>
    /// The next healthy instance with room after the last one chosen for the assignment's type (any
    /// type offering the task while the assignment has none yet), its load taken; null when none has room.
    /// </summary>
    public InstanceLoad? Take(string taskType, string? collectorType)
    {
        var key = collectorType ?? "*" + taskType;
        var candidates = Instances()
            .Where(i => i.TaskTypes.Contains(taskType) && (collectorType is null || string.Equals(i.Type, collectorType, StringComparison.Ordinal)))
            .ToList();
        if (candidates.Count == 0)
        {
            return null;
        }

        var cursor = _cursors.TryGetValue(key, out var c) ? c : -1;
        for (var k = 1; k <= candidates.Count; k++)
        {
            var index = (int)((uint)(cursor + k) % (uint)candidates.Count);
            var candidate = candidates[index];
            if (candidate.Healthy && candidate.InFlight < candidate.Capacity)
            {
                _cursors[key] = index;
                var load = LoadOf(candidate);
                load.InFlight++;
                return load;
            }
        }

        return null;
    }

    /// <summary>An attempt ended: its slot is free again.</summary>
    public void Release(Attempt attempt)
    {
        var load = attempt.Instance;
        load.InFlight--;
        load.Attempts.Remove(attempt);
        if (load.InFlight == 0 && load.Attempts.Count == 0)
        {
            _loads.Remove((load.Id, load.ConnectionId));
        }
    }

    /// <summary>The attempts in flight at any connection of <paramref name="instanceId"/>.</summary>
    public IEnumerable<Attempt> AttemptsOf(string instanceId) =>
        _loads.Values.Where(l => string.Equals(l.Id, instanceId, StringComparison.Ordinal)).SelectMany(l => l.Attempts).ToList();

    private InstanceLoad LoadOf(InstanceView instance)
    {
        if (!_loads.TryGetValue((instance.Id, instance.ConnectionId), out var load))
        {
            load = new InstanceLoad(instance.Id, instance.ConnectionId, instance.Type);
            _loads[(instance.Id, instance.ConnectionId)] = load;
        }

        return load;
    }
}
