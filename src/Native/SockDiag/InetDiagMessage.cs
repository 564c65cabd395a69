using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using DaemonEye.Native.Netlink;

namespace DaemonEye.Native.SockDiag;

/// <summary>
/// The wire layout of inet_diag (linux/inet_diag.h, linux/sock_diag.h, linux/tcp.h): the request a
/// dump sends and the <c>struct inet_diag_msg</c> every answer and destroy notification carries.
/// </summary>
public static class InetDiagMessage
{
    /// <summary>SOCK_DIAG_BY_FAMILY: the message type of requests, answers and notifications.</summary>
    public const ushort SockDiagByFamily = 20;

    /// <summary>Size of <c>struct inet_diag_req_v2</c>.</summary>
    public const int RequestSize = 56;

    /// <summary>Size of <c>struct inet_diag_msg</c>: family, state, timer, retrans (0-3); sockid:
    /// ports (4, 6, big-endian), addresses (8, 24), interface (40), cookie (44); expires (52),
    /// rqueue (56), wqueue (60), uid (64), inode (68).</summary>
    public const int MessageSize = 72;

    public const ushort AttributeInfo = 2;
    public const ushort AttributeProtocol = 10;
    public const ushort AttributeCgroupId = 21;

    // struct tcp_info offsets (linux/tcp.h).
    private const int TcpiTotalRetrans = 100;
    private const int TcpiRtt = 68;
    private const int TcpiBytesAcked = 120;
    private const int TcpiBytesReceived = 128;
    private const int TcpiSegsOut = 136;
    private const int TcpiSegsIn = 140;
    private const int TcpiMinRtt = 148;
    private const int TcpiBytesSent = 200;
    private const int TcpiBytesRetrans = 208;

    /// <summary>Writes one dump request for <paramref name="family"/> and <paramref name="protocol"/>
    /// in <paramref name="states"/>, asking for tcp_info when <paramref name="tcpInfo"/>.</summary>
    public static int WriteDumpRequest(Span<byte> buffer, AddressFamily family, ProtocolType protocol, SocketStates states, bool tcpInfo)
    {
        if (family is not (AddressFamily.InterNetwork or AddressFamily.InterNetworkV6))
        {
            throw new ArgumentException($"inet_diag dumps IPv4 or IPv6 sockets, not {family}", nameof(family));
        }

        if (protocol is not (ProtocolType.Tcp or ProtocolType.Udp))
        {
            throw new ArgumentException($"inet_diag dumps TCP or UDP sockets here, not {protocol}", nameof(protocol));
        }

        var writer = new NetlinkMessageWriter(buffer, SockDiagByFamily, 0);
        var request = writer.Append(RequestSize);
        request[0] = (byte)(family == AddressFamily.InterNetwork ? 2 : 10);
        request[1] = (byte)protocol;
        request[2] = (byte)(tcpInfo ? 1 << (AttributeInfo - 1) : 0);
        BinaryPrimitives.WriteUInt32LittleEndian(request[4..], (uint)states);
        return writer.Written.Length;
    }

    /// <summary>
    /// Reads one answer or notification. <paramref name="protocol"/> is the dump's protocol; for a
    /// destroy notification pass <see cref="ProtocolType.Unknown"/>: the kernel names it in
    /// INET_DIAG_PROTOCOL. Returns false with the reason for a message too short or of another family.
    /// </summary>
    public static bool TryParse(ReadOnlySpan<byte> payload, ProtocolType protocol, out InetSocket socket, out string? error)
    {
        socket = default;
        if (payload.Length < MessageSize)
        {
            error = $"inet_diag_msg of {payload.Length} bytes; at least {MessageSize} expected";
            return false;
        }

        var family = payload[0] switch
        {
            2 => AddressFamily.InterNetwork,
            10 => AddressFamily.InterNetworkV6,
            _ => AddressFamily.Unknown,
        };
        if (family == AddressFamily.Unknown)
        {
            error = $"inet_diag_msg of address family {payload[0]}; 2 (IPv4) or 10 (IPv6) expected";
            return false;
        }

        var addressBytes = family == AddressFamily.InterNetwork ? 4 : 16;
        var local = new IPAddress(payload.Slice(8, addressBytes));
        var remote = new IPAddress(payload.Slice(24, addressBytes));
        TcpCounters? tcp = null;
        ulong cgroup = 0;
        var attributes = new NetlinkAttributes(payload[MessageSize..]);
        while (attributes.MoveNext())
        {
            var value = attributes.Value;
            switch (attributes.Type)
            {
                case AttributeProtocol when value.Length >= 1 && protocol == ProtocolType.Unknown:
                    protocol = (ProtocolType)value[0];
                    break;
                case AttributeCgroupId when value.Length >= 8:
                    cgroup = BinaryPrimitives.ReadUInt64LittleEndian(value);
                    break;
                case AttributeInfo when value.Length >= TcpiMinRtt + 4:
                    tcp = ReadTcpInfo(value);
                    break;
            }
        }

        if (protocol == ProtocolType.Udp)
        {
            tcp = null; // INET_DIAG_INFO of a UDP socket is no tcp_info.
        }

        socket = new InetSocket(
            family,
            protocol,
            (SocketState)payload[1],
            local,
            BinaryPrimitives.ReadUInt16BigEndian(payload[4..]),
            remote,
            BinaryPrimitives.ReadUInt16BigEndian(payload[6..]),
            BinaryPrimitives.ReadUInt32LittleEndian(payload[40..]),
            BinaryPrimitives.ReadUInt64LittleEndian(payload[44..]),
            BinaryPrimitives.ReadUInt32LittleEndian(payload[64..]),
            BinaryPrimitives.ReadUInt32LittleEndian(payload[68..]),
            cgroup,
            BinaryPrimitives.ReadUInt32LittleEndian(payload[56..]),
            BinaryPrimitives.ReadUInt32LittleEndian(payload[60..]),
            tcp);
        error = null;
        return true;
    }

    private static TcpCounters ReadTcpInfo(ReadOnlySpan<byte> info)
    {
        return new TcpCounters(
            U64(info, TcpiBytesAcked),
            U64(info, TcpiBytesReceived),
            U64(info, TcpiBytesSent),
            U64(info, TcpiBytesRetrans),
            U32(info, TcpiTotalRetrans),
            U32(info, TcpiRtt),
            U32(info, TcpiMinRtt),
            U32(info, TcpiSegsOut),
            U32(info, TcpiSegsIn),
            info.Length >= TcpiBytesRetrans + 8);
    }

    private static ulong U64(ReadOnlySpan<byte> info, int offset) => info.Length >= offset + 8 ? BinaryPrimitives.ReadUInt64LittleEndian(info[offset..]) : 0;

    private static uint U32(ReadOnlySpan<byte> info, int offset) => info.Length >= offset + 4 ? BinaryPrimitives.ReadUInt32LittleEndian(info[offset..]) : 0;
}
