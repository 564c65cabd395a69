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
    /// <summary>Offers the messages of <paramref name="batch"/>; returns how many were taken (the rest are counted as dropped by the route).</summary>
    int Deliver(PublishBatch batch, ulong firstSequence);
}

/// <summary>
/// Subscriptions held by the agent itself (the event rules' windows): registered with the
/// subscription registry like a connection's, under a negative connection id no socket uses, and
/// delivered by <see cref="ConnectionDirectory"/> straight to the <see cref="ILocalSubscriber"/>:
/// one registry call per subscribe, none per message.
/// </summary>
public sealed class LocalSubscriptions(IGrainFactory grains)
{
    private readonly ConcurrentDictionary<long, ILocalSubscriber> _subscribers = new();
    private long _lastId;

    /// <summary>The subscriber of a local (negative) connection id.</summary>
    internal bool TryGet(long connectionId, out ILocalSubscriber subscriber) => _subscribers.TryGetValue(connectionId, out subscriber!);

    /// <summary>
    /// Subscribes <paramref name="subscriber"/> to <paramref name="patterns"/> (one local connection,
    /// subscription ids 1..n). Returns the connection id to pass to <see cref="UnsubscribeAsync"/>.
    /// </summary>
    /// <exception cref="InvalidOperationException">The registry refused a pattern (its error, e.g. a limit).</exception>
    public async Task<long> SubscribeAsync(IReadOnlyList<string> patterns, ILocalSubscriber subscriber)
    {
        ArgumentNullException.ThrowIfNull(patterns);
        ArgumentNullException.ThrowIfNull(subscriber);
        var id = Interlocked.Decrement(ref _lastId);
        _subscribers[id] = subscriber;
        var registry = grains.GetGrain<ISubscriptionRegistryGrain>(0);
        for (var i = 0; i < patterns.Count; i++)
        {
            var result = await registry.Subscribe(new SubscriptionKey(id, (uint)(i + 1)), patterns[i]);
            if (!result.Accepted)
            {
                await UnsubscribeAsync(id);
                throw new InvalidOperationException($"the agent's own subscription to '{patterns[i]}' was refused: {result.Error}");
            }
        }

        return id;
    }

    /// <summary>Removes every subscription of the local connection <paramref name="connectionId"/>.</summary>
    public async Task UnsubscribeAsync(long connectionId)
    {
        await grains.GetGrain<ISubscriptionRegistryGrain>(0).RemoveConnection(connectionId);
        _subscribers.TryRemove(connectionId, out _);
    }
}
