using System.Collections.Concurrent;

namespace DaemonEye.Grains;

/// <summary>
/// The silo's table of live topics: for each concrete topic whose Topic grain is active, the
/// <see cref="TopicRoute"/> the gateway publishes through without a grain call. The Topic grains
/// own it: a grain opens its route when it activates, applies the subscriber sets the registry
/// pushes to it, and retires the route when it deactivates. Everyone else only reads it.
/// </summary>
/// <remarks>
/// This is the seam that takes the grain call off the per-message path (docs/ARCHITECTURE.md,
/// "The publish path"): a publish costs a dictionary hit, a lock and one non-blocking offer per
/// subscribed connection, on the thread that read it.
/// </remarks>
public sealed class TopicRoutes(IDeliverySink sink, TimeProvider time)
{
    private readonly ConcurrentDictionary<string, TopicRoute> _routes = new(StringComparer.Ordinal);

    /// <summary>Topics with an open route now.</summary>
    public int Count => _routes.Count;

    /// <summary>The open route of <paramref name="topic"/>, if its grain is active.</summary>
    public bool TryGet(string topic, out TopicRoute route)
    {
        if (_routes.TryGetValue(topic, out var found) && !found.IsRetired)
        {
            route = found;
            return true;
        }

        route = null!;
        return false;
    }

    /// <summary>Opens the route of an activating Topic grain, replacing any retired one.</summary>
    public TopicRoute Open(string topic, TopicSubscribers subscribers, ulong lastSequence)
    {
        var route = new TopicRoute(topic, sink, time, subscribers, lastSequence);
        _routes[topic] = route;
        return route;
    }

    /// <summary>Retires <paramref name="route"/> and removes it (if it is still the topic's); returns its last sequence.</summary>
    public ulong Close(TopicRoute route)
    {
        var last = route.Retire();
        _routes.TryRemove(new KeyValuePair<string, TopicRoute>(route.Topic, route));
        return last;
    }
}

/// <summary>
/// One live topic's routing state, owned by its Topic grain: the per-topic sequence, counters, and
/// the subscriber set the registry computed (generation-stamped; the newest wins). Publishing takes
/// a lock so that numbering and the order of offers to each subscriber agree when several
/// connections publish on the topic at once; offers never block, so the lock is held briefly.
/// </summary>
public sealed class TopicRoute
{
    private readonly Lock _gate = new();
    private readonly IDeliverySink _sink;
    private readonly TimeProvider _time;
    private TopicSubscribers _subscribers;
    private ulong _sequence;
    private ulong _published;
    private ulong _delivered;
    private ulong _dropped;
    private long _lastPublish;
    private volatile bool _retired;

    internal TopicRoute(string topic, IDeliverySink sink, TimeProvider time, TopicSubscribers subscribers, ulong lastSequence)
    {
        Topic = topic;
        _sink = sink;
        _time = time;
        _lastPublish = time.GetTimestamp();
        _subscribers = subscribers;
        _sequence = lastSequence;
    }

    public string Topic { get; }

    /// <summary>True once the owning grain deactivated: publishers must resolve the topic again.</summary>
    public bool IsRetired => _retired;

    /// <summary>How long since the last publish was routed (or the route opened).</summary>
    public TimeSpan Idle => _time.GetElapsedTime(Volatile.Read(ref _lastPublish));

    /// <summary>
    /// Numbers <paramref name="batch"/> and offers it to every subscribed connection. False (nothing
    /// done) when the route is retired: the caller resolves the topic again through its grain.
    /// </summary>
    public bool TryPublish(PublishBatch batch)
    {
        lock (_gate)
        {
            if (_retired)
            {
                return false;
            }

            var count = batch.Count;
            var first = _sequence + 1;
            _sequence += (ulong)count;
            _published += (ulong)count;
            foreach (var target in _subscribers.Targets)
            {
                var accepted = _sink.Deliver(target, batch, first);
                if (accepted < 0)
                {
                    // The connection closed; the registry drops its subscriptions as the gateway reports it.
                    continue;
                }

                _delivered += (ulong)accepted;
                _dropped += (ulong)(count - accepted);
            }
        }

        Volatile.Write(ref _lastPublish, _time.GetTimestamp());
        return true;
    }

    /// <summary>Takes a subscriber set pushed by the registry, unless it is older than the one held.</summary>
    public void Apply(TopicSubscribers subscribers)
    {
        lock (_gate)
        {
            // Sets can arrive out of order when subscriptions change concurrently; the newest wins.
            if (subscribers.Generation >= _subscribers.Generation)
            {
                _subscribers = subscribers;
            }
        }
    }

    public TopicStats Stats()
    {
        lock (_gate)
        {
            return new TopicStats(Topic, _published, _delivered, _dropped, _subscribers.Targets.Sum(t => t.SubscriptionIds.Length), _sequence);
        }
    }

    internal ulong Retire()
    {
        lock (_gate)
        {
            _retired = true;
            return _sequence;
        }
    }
}
