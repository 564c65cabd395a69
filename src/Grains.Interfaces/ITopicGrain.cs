namespace DaemonEye.Grains;

/// <summary>
/// One concrete topic (the grain key, e.g. "events.process.lifecycle"): owns the topic's
/// <see cref="TopicRoute"/> (numbering, counters, subscriber set) for as long as it is active.
/// The gateway publishes through the route itself; it calls <see cref="Open"/> only when it finds none.
/// </summary>
[Alias("daemoneye.ITopicGrain")]
public interface ITopicGrain : IGrainWithStringKey
{
    /// <summary>Activates the grain, which opens its route in <see cref="TopicRoutes"/>.</summary>
    [Alias("Open")]
    Task Open();

    /// <summary>Routes a batch through the route (the agent's own publishes); returns once every matching connection has accepted or dropped it.</summary>
    [Alias("Publish")]
    Task Publish(PublishBatch batch);

    /// <summary>Replaces the set of matching subscriptions (called by the registry).</summary>
    [Alias("ApplySubscribers")]
    Task ApplySubscribers(TopicSubscribers subscribers);

    [Alias("GetStats")]
    Task<TopicStats> GetStats();
}

/// <summary>
/// The one registry (key 0) of every subscription pattern. Resolves which subscriptions match a
/// topic and keeps the live Topic grains' subscriber sets current.
/// </summary>
[Alias("daemoneye.ISubscriptionRegistryGrain")]
public interface ISubscriptionRegistryGrain : IGrainWithIntegerKey
{
    /// <summary>Adds a subscription. When it returns, every live matching Topic grain delivers to it.</summary>
    [Alias("Subscribe")]
    Task<SubscribeResult> Subscribe(SubscriptionKey key, string pattern);

    /// <summary>Removes a subscription. When it returns, no Topic grain delivers to it any more.</summary>
    [Alias("Unsubscribe")]
    Task<bool> Unsubscribe(SubscriptionKey key);

    /// <summary>Removes every subscription of a closed connection.</summary>
    [Alias("RemoveConnection")]
    Task<int> RemoveConnection(long connectionId);

    /// <summary>A Topic grain activated: returns its subscribers and the last sequence it had used.</summary>
    [Alias("RegisterTopic")]
    Task<TopicRegistration> RegisterTopic(string topic);

    /// <summary>A Topic grain deactivates; remember its sequence so numbering continues.</summary>
    [Alias("UnregisterTopic")]
    Task UnregisterTopic(string topic, ulong lastSequence);

    /// <summary>The patterns that match <paramref name="topic"/> (diagnostics; the CLI and tests).</summary>
    [Alias("Resolve")]
    Task<SubscriptionKey[]> Resolve(string topic);

    [Alias("GetStats")]
    Task<RegistryStats> GetStats();
}

public static class RegistryGrain
{
    /// <summary>The registry is a singleton grain with this key.</summary>
    public const long Key = 0;
}
