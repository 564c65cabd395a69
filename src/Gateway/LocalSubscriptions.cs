using System.Collections.Concurrent;
using DaemonEye.Grains;

namespace DaemonEye.Gateway;

/// <summary>
/// A subscriber inside the agent: receives the messages of its patterns as the connections do, on the
/// publishing thread, under the topic's route lock. It must not block: it takes what it can (keeping
/// <see cref="PublishBatch.Stable"/> when it keeps the batch past the call) and counts the rest.
/// </summary>
public interface ILocalSubscriber
{
    /// <summary>
    /// Offers the messages of <paramref name="batch"/>, numbered from <paramref name="firstSequence"/>, which
    /// matched the subscriptions <c>target.SubscriptionIds</c> of the subscriber's local connection
    /// <c>target.ConnectionId</c>; returns how many were taken (the rest are counted as dropped by the route).
    /// </summary>
    int Deliver(DeliveryTarget target, PublishBatch batch, ulong firstSequence);
}

/// <summary>
/// The agent's own subscribers (the event rules' windows, the MQTT bridge): each is a local connection,
/// registered with the subscription registry like a socket's, under a negative connection id no socket
/// uses, and delivered by <see cref="ConnectionDirectory"/> straight to its <see cref="ILocalSubscriber"/>:
/// one registry call per subscribe, none per message.
/// </summary>
/// <remarks>
/// The registry lists a topic's targets by connection id, so every local subscriber (the bridge too) is
/// offered a batch before any socket connection is.
/// </remarks>
public sealed class LocalSubscriptions(IGrainFactory grains)
{
    private readonly ConcurrentDictionary<long, ILocalSubscriber> _subscribers = new();
    private long _lastId;

    private ISubscriptionRegistryGrain Registry => grains.GetGrain<ISubscriptionRegistryGrain>(RegistryGrain.Key);

    /// <summary>The subscriber of a local (negative) connection id.</summary>
    internal bool TryGet(long connectionId, out ILocalSubscriber subscriber) => _subscribers.TryGetValue(connectionId, out subscriber!);

    /// <summary>Opens a local connection for <paramref name="subscriber"/>, with no subscription yet; returns its (negative) id.</summary>
    public long Open(ILocalSubscriber subscriber)
    {
        ArgumentNullException.ThrowIfNull(subscriber);
        var id = Interlocked.Decrement(ref _lastId);
        _subscribers[id] = subscriber;
        return id;
    }

    /// <summary>Subscribes local connection <paramref name="connectionId"/> to <paramref name="pattern"/> as <paramref name="subscriptionId"/>: the registry's answer.</summary>
    public Task<SubscribeResult> SubscribeAsync(long connectionId, uint subscriptionId, string pattern) =>
        Registry.Subscribe(new SubscriptionKey(connectionId, subscriptionId), pattern);

    /// <summary>Removes one subscription of local connection <paramref name="connectionId"/>; false when it did not exist.</summary>
    public Task<bool> UnsubscribeAsync(long connectionId, uint subscriptionId) =>
        Registry.Unsubscribe(new SubscriptionKey(connectionId, subscriptionId));

    /// <summary>
    /// Opens a local connection for <paramref name="subscriber"/> subscribed to <paramref name="patterns"/>
    /// (subscription ids 1..n). Returns the connection id to pass to <see cref="CloseAsync"/>.
    /// </summary>
    /// <exception cref="InvalidOperationException">The registry refused a pattern (its error, e.g. a limit).</exception>
    public async Task<long> SubscribeAsync(IReadOnlyList<string> patterns, ILocalSubscriber subscriber)
    {
        ArgumentNullException.ThrowIfNull(patterns);
        var id = Open(subscriber);
        for (var i = 0; i < patterns.Count; i++)
        {
            var result = await SubscribeAsync(id, (uint)(i + 1), patterns[i]);
            if (!result.Accepted)
            {
                await CloseAsync(id);
                throw new InvalidOperationException($"the agent's own subscription to '{patterns[i]}' was refused: {result.Error}");
            }
        }

        return id;
    }

    /// <summary>Removes every subscription of local connection <paramref name="connectionId"/>, then the connection.</summary>
    public async Task CloseAsync(long connectionId)
    {
        await Registry.RemoveConnection(connectionId);
        _subscribers.TryRemove(connectionId, out _);
    }
}
