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
    private readonly ConcurrentDictionary<long, IDeliverySink> _bridges = new();

    public void Add(BusConnection connection) => _connections[connection.Id] = connection;

    public void Remove(long id) => _connections.TryRemove(id, out _);

    /// <summary>
    /// Registers an in-process subscriber that is not a socket connection (the MQTT bridge) under an id
    /// outside the listeners' ranges: its subscriptions are the registry's like any connection's.
    /// </summary>
    public void AddBridge(long id, IDeliverySink sink) => _bridges[id] = sink;

    public void RemoveBridge(long id) => _bridges.TryRemove(id, out _);

    /// <summary>The live connections now (for metrics and health; a moment's view).</summary>
    public IEnumerable<BusConnection> Connections => _connections.Values;

    public int Deliver(DeliveryTarget target, PublishBatch batch, ulong firstSequence)
    {
        if (_connections.TryGetValue(target.ConnectionId, out var connection))
        {
            return connection.Offer(target, batch, firstSequence);
        }

        if (_bridges.TryGetValue(target.ConnectionId, out var bridge))
        {
            return bridge.Deliver(target, batch, firstSequence); // the MQTT listener (MqttBridge.BridgeId)
        }

        // Negative ids are the agent's own subscribers (LocalSubscriptions).
        return target.ConnectionId < 0 && local is not null && local.TryGet(target.ConnectionId, out var subscriber) ? subscriber.Deliver(batch, firstSequence) : -1;
    }
}
