using DaemonEye.Gateway.Security;

namespace DaemonEye.Gateway;

/// <summary>Counters of the bus gateway, shared by all connections. Read by status and metrics.</summary>
public sealed class GatewayStatistics
{
    private long _connectionsAccepted;
    private long _connectionsOpen;
    private long _published;
    private long _delivered;
    private long _dropped;
    private long _protocolErrors;
    private long _unrouted;
    private long _peersRefusedBus;
    private long _peersRefusedIpc;
    private readonly long[] _denied = new long[AccessRules.Count];
    private readonly long[] _limits = new long[Limits.Count];

    public long ConnectionsAccepted => Interlocked.Read(ref _connectionsAccepted);

    public long ConnectionsOpen => Interlocked.Read(ref _connectionsOpen);

    /// <summary>Publish frames accepted for routing.</summary>
    public long Published => Interlocked.Read(ref _published);

    /// <summary>Messages written to subscriber connections.</summary>
    public long Delivered => Interlocked.Read(ref _delivered);

    /// <summary>Messages dropped because a subscriber's outbound buffer was full.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    /// <summary>Frames refused as malformed, oversized, truncated, or out of protocol.</summary>
    public long ProtocolErrors => Interlocked.Read(ref _protocolErrors);

    /// <summary>Published messages that could not be routed because the grain call failed.</summary>
    public long Unrouted => Interlocked.Read(ref _unrouted);

    /// <summary>Bus connections refused on accept by their peer credentials (SO_PEERCRED).</summary>
    public long PeersRefusedBus => Interlocked.Read(ref _peersRefusedBus);

    /// <summary>IPC connections refused on accept by their peer credentials (SO_PEERCRED).</summary>
    public long PeersRefusedIpc => Interlocked.Read(ref _peersRefusedIpc);

    /// <summary>Actions denied by <paramref name="rule"/> since the agent started.</summary>
    public long DeniedBy(AccessRule rule) => Interlocked.Read(ref _denied[(int)rule]);

    /// <summary>Requests refused by <paramref name="limit"/> since the agent started.</summary>
    public long RefusedBy(Limit limit) => Interlocked.Read(ref _limits[(int)limit]);

    internal void AddPeerRefused(bool ipc) => Interlocked.Increment(ref ipc ? ref _peersRefusedIpc : ref _peersRefusedBus);

    internal void AddDenied(AccessRule rule) => Interlocked.Increment(ref _denied[(int)rule]);

    internal void AddLimitRefusal(Limit limit) => Interlocked.Increment(ref _limits[(int)limit]);

    internal void ConnectionOpened()
    {
        Interlocked.Increment(ref _connectionsAccepted);
        Interlocked.Increment(ref _connectionsOpen);
    }

    internal void ConnectionClosed() => Interlocked.Decrement(ref _connectionsOpen);

    internal void AddPublished(long n) => Interlocked.Add(ref _published, n);

    internal void AddDelivered(long n) => Interlocked.Add(ref _delivered, n);

    internal void AddDropped(long n) => Interlocked.Add(ref _dropped, n);

    internal void AddProtocolError() => Interlocked.Increment(ref _protocolErrors);

    internal void AddUnrouted(long n) => Interlocked.Add(ref _unrouted, n);
}
