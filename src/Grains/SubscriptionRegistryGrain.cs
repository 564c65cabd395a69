using DaemonEye.Configuration;
using DaemonEye.Topics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Concurrency;

namespace DaemonEye.Grains;

/// <summary>
/// Holds every subscription pattern in a <see cref="TopicMatcher{T}"/>, answers which
/// subscriptions match a topic, and pushes each live Topic grain its new subscriber set whenever
/// a change touches it. Kept alive for the agent's lifetime: its state is the bus's routing table.
/// </summary>
/// <remarks>
/// Reentrant, which is safe because every method changes state synchronously, before its first
/// await; the only awaits fan out <see cref="ITopicGrain.ApplySubscribers"/>, and each set carries
/// the registry generation it was computed at, so a Topic grain keeps the newest whatever order
/// they arrive in. Reentrancy is also what lets a Topic grain that activates while a change is
/// fanning out call <see cref="RegisterTopic"/> without a deadlock.
/// </remarks>
[Reentrant]
[KeepAlive]
internal sealed partial class SubscriptionRegistryGrain(IOptions<BrokerOptions> options, ILogger<SubscriptionRegistryGrain> logger)
    : Grain, ISubscriptionRegistryGrain
{
    private readonly TopicMatcher<SubscriptionKey> _matcher = new(cacheCapacity: 1024);
    private readonly Dictionary<SubscriptionKey, string> _patterns = [];
    private readonly Dictionary<long, List<uint>> _byConnection = [];
    private readonly HashSet<string> _activeTopics = new(StringComparer.Ordinal);
    private readonly Dictionary<string, ulong> _lastSequences = new(StringComparer.Ordinal);
    private readonly Queue<string> _rememberedOrder = new(); // topics in _lastSequences, oldest first
    private ulong _forgottenFloor; // the highest sequence of any topic whose last sequence was forgotten
    private readonly Dictionary<string, int> _perPattern = new(StringComparer.Ordinal);
    private readonly int _maxSubscribers = options.Value.MaxSubscribers;
    private readonly int _maxPerTopic = options.Value.MaxSubscribersPerTopic;
    private long _generation;

    public async Task<SubscribeResult> Subscribe(SubscriptionKey key, string pattern)
    {
        var validation = TopicRules.ValidatePattern(pattern);
        if (!validation.IsValid)
        {
            return new SubscribeResult(false, validation.Error, _patterns.Count);
        }

        if (_patterns.ContainsKey(key))
        {
            return new SubscribeResult(false, $"subscription {key.SubscriptionId} already exists on connection {key.ConnectionId}", _patterns.Count);
        }

        if (_patterns.Count >= _maxSubscribers)
        {
            LogLimitReached(logger, _maxSubscribers, key.ConnectionId, pattern);
            return new SubscribeResult(
                false,
                $"broker.max_subscribers ({_maxSubscribers}) reached: the broker already holds {_patterns.Count} subscriptions; unsubscribe some or raise broker.max_subscribers",
                _patterns.Count,
                "broker.max_subscribers");
        }

        _perPattern.TryGetValue(pattern, out var onPattern);
        if (onPattern >= _maxPerTopic)
        {
            LogTopicLimitReached(logger, _maxPerTopic, pattern, key.ConnectionId);
            return new SubscribeResult(
                false,
                $"broker.max_subscribers_per_topic ({_maxPerTopic}) reached: '{pattern}' already has {onPattern} subscriptions; unsubscribe some or raise broker.max_subscribers_per_topic",
                _patterns.Count,
                "broker.max_subscribers_per_topic");
        }

        _perPattern[pattern] = onPattern + 1;
        _matcher.Add(pattern, key);
        _patterns.Add(key, pattern);
        if (!_byConnection.TryGetValue(key.ConnectionId, out var ids))
        {
            _byConnection[key.ConnectionId] = ids = [];
        }

        ids.Add(key.SubscriptionId);
        _generation++;
        LogSubscribed(logger, key.ConnectionId, key.SubscriptionId, pattern);
        await PushTo(AffectedTopics(pattern));
        return new SubscribeResult(true, null, _patterns.Count);
    }

    public async Task<bool> Unsubscribe(SubscriptionKey key)
    {
        if (!Forget(key, out var pattern))
        {
            return false;
        }

        _generation++;
        await PushTo(AffectedTopics(pattern));
        return true;
    }

    public async Task<int> RemoveConnection(long connectionId)
    {
        if (!_byConnection.TryGetValue(connectionId, out var ids))
        {
            return 0;
        }

        var patterns = new List<string>(ids.Count);
        foreach (var id in ids.ToArray())
        {
            if (Forget(new SubscriptionKey(connectionId, id), out var pattern))
            {
                patterns.Add(pattern);
            }
        }

        _generation++;
        var affected = new HashSet<string>(StringComparer.Ordinal);
        foreach (var pattern in patterns)
        {
            affected.UnionWith(AffectedTopics(pattern));
        }

        await PushTo(affected);
        return patterns.Count;
    }

    public Task<TopicRegistration> RegisterTopic(string topic)
    {
        _activeTopics.Add(topic);
        // A topic whose number was forgotten resumes above every forgotten number: monotonic still.
        var last = _lastSequences.TryGetValue(topic, out var remembered) ? remembered : _forgottenFloor;
        return Task.FromResult(new TopicRegistration(Compute(topic), last));
    }

    public Task UnregisterTopic(string topic, ulong lastSequence)
    {
        _activeTopics.Remove(topic);
        if (_lastSequences.TryAdd(topic, lastSequence))
        {
            _rememberedOrder.Enqueue(topic);
        }
        else
        {
            _lastSequences[topic] = lastSequence;
        }

        // Idle topics cost a name and a number each: keep the newest RememberedTopics of them.
        while (_lastSequences.Count > RememberedTopics && _rememberedOrder.TryDequeue(out var oldest))
        {
            if (_lastSequences.Remove(oldest, out var forgotten))
            {
                _forgottenFloor = Math.Max(_forgottenFloor, forgotten);
            }
        }

        return Task.CompletedTask;
    }

    /// <summary>How many released topics' last sequences the registry remembers.</summary>
    internal const int RememberedTopics = 100_000;

    public Task<SubscriptionKey[]> Resolve(string topic) =>
        Task.FromResult(TopicRules.IsValidTopic(topic) ? (SubscriptionKey[])_matcher.Match(topic).Clone() : []);

    public Task<RegistryStats> GetStats() =>
        Task.FromResult(new RegistryStats(_patterns.Count, _byConnection.Count, _activeTopics.Count, _generation, _maxSubscribers));

    private bool Forget(SubscriptionKey key, out string pattern)
    {
        if (!_patterns.Remove(key, out pattern!))
        {
            return false;
        }

        _matcher.Remove(pattern, key);
        if (_perPattern.TryGetValue(pattern, out var onPattern) && --onPattern > 0)
        {
            _perPattern[pattern] = onPattern;
        }
        else
        {
            _perPattern.Remove(pattern);
        }

        if (_byConnection.TryGetValue(key.ConnectionId, out var ids))
        {
            ids.Remove(key.SubscriptionId);
            if (ids.Count == 0)
            {
                _byConnection.Remove(key.ConnectionId);
            }
        }

        LogUnsubscribed(logger, key.ConnectionId, key.SubscriptionId, pattern);
        return true;
    }

    private List<string> AffectedTopics(string pattern)
    {
        var affected = new List<string>();
        foreach (var topic in _activeTopics)
        {
            if (TopicRules.Matches(pattern, topic))
            {
                affected.Add(topic);
            }
        }

        return affected;
    }

    private Task PushTo(IEnumerable<string> topics)
    {
        // Sets are computed now, synchronously, so each reflects exactly this generation.
        var calls = new List<Task>();
        foreach (var topic in topics)
        {
            calls.Add(GrainFactory.GetGrain<ITopicGrain>(topic).ApplySubscribers(Compute(topic)));
        }

        return calls.Count == 0 ? Task.CompletedTask : Task.WhenAll(calls);
    }

    /// <summary>
    /// The targets of <paramref name="topic"/>, one per connection, in connection id order: the agent's own
    /// subscribers (negative ids: the event rules, the MQTT bridge) are offered each batch before any socket
    /// connection (positive ids) is.
    /// </summary>
    private TopicSubscribers Compute(string topic)
    {
        var keys = _matcher.Match(topic);
        if (keys.Length == 0)
        {
            return new TopicSubscribers(_generation, []);
        }

        var targets = keys
            .GroupBy(k => k.ConnectionId)
            .OrderBy(g => g.Key)
            .Select(g => new DeliveryTarget(g.Key, [.. g.Select(k => k.SubscriptionId).Order()]))
            .ToArray();
        return new TopicSubscribers(_generation, targets);
    }

    [LoggerMessage(EventId = 1000, Level = LogLevel.Debug, Message = "Connection {ConnectionId} subscribed {SubscriptionId} to {Pattern}")]
    private static partial void LogSubscribed(ILogger logger, long connectionId, uint subscriptionId, string pattern);

    [LoggerMessage(EventId = 1001, Level = LogLevel.Debug, Message = "Connection {ConnectionId} dropped subscription {SubscriptionId} to {Pattern}")]
    private static partial void LogUnsubscribed(ILogger logger, long connectionId, uint subscriptionId, string pattern);

    [LoggerMessage(EventId = 1002, Level = LogLevel.Warning, Message = "broker.max_subscribers ({Max}) reached; refused connection {ConnectionId}'s subscription to {Pattern}")]
    private static partial void LogLimitReached(ILogger logger, int max, long connectionId, string pattern);

    [LoggerMessage(EventId = 1003, Level = LogLevel.Warning, Message = "broker.max_subscribers_per_topic ({Max}) reached on {Pattern}; refused connection {ConnectionId}'s subscription")]
    private static partial void LogTopicLimitReached(ILogger logger, int max, string pattern, long connectionId);
}
