using System.Net;
using System.Net.Sockets;
using DaemonEye.Native.SockDiag;
using DaemonEye.Protocol.Network.V1;

namespace DaemonEye.Collectors.Netmond;

/// <summary>The table's messages: connections, listeners, anomalies and the snapshot.</summary>
internal sealed partial class SocketTable
{
    private static readonly IPNetwork[] PrivateNetworks =
    [
        IPNetwork.Parse("10.0.0.0/8"), IPNetwork.Parse("172.16.0.0/12"), IPNetwork.Parse("192.168.0.0/16"),
        IPNetwork.Parse("100.64.0.0/10"), IPNetwork.Parse("169.254.0.0/16"), IPNetwork.Parse("fc00::/7"), IPNetwork.Parse("fe80::/10"),
    ];

    /// <summary>Every connection and listener as of the last scan, connections cut at
    /// max_snapshot_bytes (counted in connections_omitted).</summary>
    public NetworkSnapshot Snapshot(ulong networkNamespace)
    {
        var snapshot = new NetworkSnapshot
        {
            TakenUnixMs = (ulong)(LastScan ?? time.GetUtcNow()).ToUnixTimeMilliseconds(),
            CollectorId = collectorId,
            ScanDurationUs = (ulong)Counters.LastScanMicros,
            NetworkNamespace = networkNamespace,
        };
        var size = 64;
        foreach (var t in _sockets.Values.Where(t => t.IsListener).OrderBy(t => t.Socket.LocalPort))
        {
            var l = ListenerInfo(t);
            size += l.CalculateSize() + 6;
            snapshot.Listeners.Add(l);
        }

        foreach (var t in _sockets.Values.Where(t => !t.IsListener).OrderBy(t => t.FirstSeenUnixMs))
        {
            var c = ConnectionInfo(t, closedBy: null);
            var bytes = c.CalculateSize() + 6;
            if (size + bytes > settings.MaxSnapshotBytes)
            {
                snapshot.ConnectionsOmitted++;
                continue;
            }

            size += bytes;
            snapshot.Connections.Add(c);
        }

        return snapshot;
    }

    private void AddConnection(NetworkChanges changes, ConnectionEvent e, ulong nowUnixMs)
    {
        var c = e.Connection;
        if (settings.Ignored((int)c.Local.Port, (int)c.Remote.Port, IPAddress.Parse(c.Remote.Address)))
        {
            Counters.Filtered++;
            return;
        }

        e.ObservedUnixMs = nowUnixMs;
        e.CollectorId = collectorId;
        changes.Connections.Add(e);
    }

    private void AddListener(NetworkChanges changes, ListenerEventKind kind, Listener listener, ulong nowUnixMs)
    {
        if (settings.Ignored((int)listener.Local.Port, 0, IPAddress.Parse(listener.Local.Address)))
        {
            Counters.Filtered++;
            return;
        }

        changes.Listeners.Add(new ListenerEvent { Kind = kind, Listener = listener, ObservedUnixMs = nowUnixMs, CollectorId = collectorId });
    }

    /// <summary>The built-in check: an exposed listener by a process outside exposed_listener_allow.</summary>
    private void CheckExposed(NetworkChanges changes, Listener listener, ulong nowUnixMs)
    {
        var allow = settings.ExposedListenerAllow;
        if (!listener.Exposed || allow.Count == 0 || settings.Ignored((int)listener.Local.Port, 0, IPAddress.Parse(listener.Local.Address)))
        {
            return;
        }

        var owner = listener.Owner;
        if (owner.Attributed && (allow.Contains(owner.Executable) || allow.Contains(owner.Name)))
        {
            return;
        }

        var where = $"{Transport(listener.Transport)} {listener.Local.Address}:{listener.Local.Port}";
        changes.Anomalies.Add(new NetworkAnomaly
        {
            Kind = owner.Attributed ? AnomalyKind.ExposedListenerNotAllowed : AnomalyKind.ExposedListenerUnattributed,
            Description = owner.Attributed
                ? $"{owner.Name} (pid {owner.Pid}, {owner.Executable}) listens on {where}, reachable from outside the host, and is not in exposed_listener_allow"
                : $"a socket no process can be named for listens on {where}, reachable from outside the host ({owner.UnattributedReason})",
            Listener = listener,
            ObservedUnixMs = nowUnixMs,
            CollectorId = collectorId,
        });
    }

    private static string Transport(Protocol.Network.V1.Transport t) => t == Protocol.Network.V1.Transport.Tcp ? "tcp" : "udp";

    private static Listener ListenerInfo(TrackedSocket t)
    {
        var s = t.Socket;
        var scope = ScopeOf(s.LocalAddress);
        return new Listener
        {
            Transport = TransportOf(s),
            Family = FamilyOf(s),
            Local = Endpoint(s.LocalAddress, s.LocalPort),
            Scope = scope,
            Exposed = scope is BindScope.Wildcard or BindScope.Public,
            Cookie = s.Cookie,
            Inode = s.Inode,
            Owner = t.Owner,
            FirstSeenUnixMs = t.FirstSeenUnixMs,
            InterfaceIndex = s.Interface,
        };
    }

    /// <summary>The connection; <paramref name="closedBy"/> is the destroy notification with the final counters.</summary>
    private static Connection ConnectionInfo(TrackedSocket t, InetSocket? closedBy)
    {
        var s = closedBy ?? t.Socket;
        var c = new Connection
        {
            Transport = TransportOf(s),
            Family = FamilyOf(s),
            Local = Endpoint(s.LocalAddress, s.LocalPort),
            Remote = Endpoint(s.RemoteAddress, s.RemotePort),
            Direction = t.Direction,
            State = StateName(closedBy is null ? s.State : SocketState.Close),
            Cookie = s.Cookie,
            Inode = t.Socket.Inode,
            Owner = t.Owner,
            FirstSeenUnixMs = t.FirstSeenUnixMs,
        };
        if ((closedBy?.Tcp ?? t.Socket.Tcp) is { } tcp)
        {
            c.BytesSent = tcp.PayloadBytesSent;
            c.BytesReceived = ReceivedPayload(tcp, closedBy is not null || s.State is SocketState.CloseWait or SocketState.LastAck or SocketState.Closing);
            c.Retransmits = tcp.TotalRetransmits;
            c.RttUs = tcp.RttMicros;
        }

        return c;
    }

    /// <summary>
    /// Payload bytes received. The kernel's tcpi_bytes_received counts sequence space, in which the
    /// peer's FIN is one byte: once the peer closed (CLOSE_WAIT, LAST_ACK, CLOSING, or the socket
    /// was freed) that byte is taken off. A connection the peer reset after sending data (no FIN)
    /// then reads one byte short: the kernel's final state does not say which it was.
    /// </summary>
    internal static ulong ReceivedPayload(TcpCounters tcp, bool peerClosed) => peerClosed && tcp.BytesReceived > 0 ? tcp.BytesReceived - 1 : tcp.BytesReceived;

    internal static BindScope ScopeOf(IPAddress address)
    {
        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }

        if (address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any))
        {
            return BindScope.Wildcard;
        }

        if (IPAddress.IsLoopback(address))
        {
            return BindScope.Loopback;
        }

        return PrivateNetworks.Any(n => n.Contains(address)) ? BindScope.Private : BindScope.Public;
    }

    private static Protocol.Network.V1.Transport TransportOf(in InetSocket s) => s.Protocol == ProtocolType.Tcp ? Protocol.Network.V1.Transport.Tcp : Protocol.Network.V1.Transport.Udp;

    private static IpFamily FamilyOf(in InetSocket s) => s.Family == AddressFamily.InterNetwork ? IpFamily.Ipv4 : IpFamily.Ipv6;

    private static Endpoint Endpoint(IPAddress address, int port) => new() { Address = address.ToString(), Port = (uint)port };

    internal static string StateName(SocketState state) => state switch
    {
        SocketState.Established => "ESTABLISHED",
        SocketState.SynSent => "SYN_SENT",
        SocketState.SynRecv => "SYN_RECV",
        SocketState.FinWait1 => "FIN_WAIT1",
        SocketState.FinWait2 => "FIN_WAIT2",
        SocketState.TimeWait => "TIME_WAIT",
        SocketState.Close => "CLOSE",
        SocketState.CloseWait => "CLOSE_WAIT",
        SocketState.LastAck => "LAST_ACK",
        SocketState.Listen => "LISTEN",
        SocketState.Closing => "CLOSING",
        _ => "UNKNOWN",
    };
}
