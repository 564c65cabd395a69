using System.Collections.Concurrent;
using DaemonEye.Grains;

namespace DaemonEye.Gateway;

/// <summary>
/// The gateway's <see cref="IDeliverySink"/>: the in-process delivery path from Topic grains to the live
/// socket connections of this process, by id, and to the agent's own subscribers
/// (<see cref="LocalSubscriptions"/>, negative ids: the event rules, the MQTT bridge).
/// </summary>
internal sealed class ConnectionDirectory(LocalSubscriptions? local = null) : IDeliverySink
{
    private readonly ConcurrentDictionary<long, BusConnection> _connections = new();

    public void Add(BusConnection connection) => _connections[connection.Id] = connection;

    public void Remove(long id) => _connections.TryRemove(id, out _);

    /// <summary>The live connections now (for metrics and health; a moment's view).</summary>
    public IEnumerable<BusConnection> Connections => _connections.Values;

    public int Deliver(DeliveryTarget target, PublishBatch batch, ulong firstSequence)
    {
        if (target.ConnectionId < 0)
        {
            return local is not null && local.TryGet(target.ConnectionId, out var subscriber) ? subscriber.Deliver(target, batch, firstSequence) : -1;
        }

        return _connections.TryGetValue(target.ConnectionId, out var connection) ? connection.Offer(target, batch, firstSequence) : -1;
    }
}
