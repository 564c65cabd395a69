namespace DaemonEye.Client.Internal;

/// <summary>
/// The client's live subscriptions, across connections: what a reconnect restores and what
/// disposal ends. The agent's ids for them are per connection (<see cref="Connection.Subscriptions"/>,
/// bound by the reader when a SubscribeAck arrives).
/// </summary>
internal sealed class SubscriptionManager
{
    private readonly Lock _gate = new();
    private readonly List<BusSubscription> _subscriptions = [];

    /// <summary>Adds a subscription the agent acknowledged (once).</summary>
    public void Add(BusSubscription subscription)
    {
        lock (_gate)
        {
            if (!_subscriptions.Contains(subscription))
            {
                _subscriptions.Add(subscription);
            }
        }
    }

    public void Remove(BusSubscription subscription)
    {
        lock (_gate)
        {
            _subscriptions.Remove(subscription);
        }
    }

    /// <summary>The subscriptions now, to restore on a new connection.</summary>
    public List<BusSubscription> Snapshot()
    {
        lock (_gate)
        {
            return [.. _subscriptions];
        }
    }

    /// <summary>Removes and returns every subscription (the client is ending).</summary>
    public List<BusSubscription> TakeAll()
    {
        lock (_gate)
        {
            List<BusSubscription> all = [.. _subscriptions];
            _subscriptions.Clear();
            return all;
        }
    }
}
