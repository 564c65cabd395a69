using System.Collections.Concurrent;
using DaemonEye.Grains;

namespace DaemonEye.Gateway;

/// <summary>
/// The live connections of this process, by id: the in-process delivery path from Topic grains
/// to sockets (the gateway's <see cref="IDeliverySink"/>), and to the agent's own subscribers
/// (<see cref="LocalSubscriptions"/>, negative ids).
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
        if (_connections.TryGetValue(target.ConnectionId, out var connection))
        {
            return connection.Offer(target, batch, firstSequence);
        }

        // Negative ids are the agent's own subscribers (LocalSubscriptions).
        return target.ConnectionId < 0 && local is not null && local.TryGet(target.ConnectionId, out var subscriber) ? subscriber.Deliver(batch, firstSequence) : -1;
    }
}
