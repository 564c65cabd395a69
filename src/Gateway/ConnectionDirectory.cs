using System.Collections.Concurrent;
using DaemonEye.Grains;

namespace DaemonEye.Gateway;

/// <summary>
/// The live connections of this process, by id: the in-process delivery path from Topic grains
/// to sockets (the gateway's <see cref="IDeliverySink"/>).
/// </summary>
internal sealed class ConnectionDirectory : IDeliverySink
{
    private readonly ConcurrentDictionary<long, BusConnection> _connections = new();

    public void Add(BusConnection connection) => _connections[connection.Id] = connection;

    public void Remove(long id) => _connections.TryRemove(id, out _);

    /// <summary>The live connections now (for metrics and health; a moment's view).</summary>
    public IEnumerable<BusConnection> Connections => _connections.Values;

    public int Deliver(DeliveryTarget target, PublishBatch batch, ulong firstSequence) =>
        _connections.TryGetValue(target.ConnectionId, out var connection) ? connection.Offer(target, batch, firstSequence) : -1;
}
