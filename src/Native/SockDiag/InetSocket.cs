using System.Net;
using System.Net.Sockets;

namespace DaemonEye.Native.SockDiag;

/// <summary>The kernel's TCP states (include/net/tcp_states.h), as inet_diag reports them; UDP
/// sockets are <see cref="Close"/> when unconnected and <see cref="Established"/> when connected.</summary>
public enum SocketState : byte
{
    Unknown = 0,
    Established = 1,
    SynSent = 2,
    SynRecv = 3,
    FinWait1 = 4,
    FinWait2 = 5,
    TimeWait = 6,
    Close = 7,
    CloseWait = 8,
    LastAck = 9,
    Listen = 10,
    Closing = 11,
    NewSynRecv = 12,
}

/// <summary>A set of <see cref="SocketState"/> as the request's <c>idiag_states</c> bit mask.</summary>
[Flags]
public enum SocketStates : uint
{
    None = 0,
    Established = 1 << 1,
    SynSent = 1 << 2,
    SynRecv = 1 << 3,
    FinWait1 = 1 << 4,
    FinWait2 = 1 << 5,
    TimeWait = 1 << 6,
    Close = 1 << 7,
    CloseWait = 1 << 8,
    LastAck = 1 << 9,
    Listen = 1 << 10,
    Closing = 1 << 11,

    /// <summary>Every state a full socket (one with an owner: uid, inode, tcp_info) can be in:
    /// all but TIME_WAIT and the SYN_RECV request sockets, which belong to no process.</summary>
    FullSockets = Established | SynSent | FinWait1 | FinWait2 | Close | CloseWait | LastAck | Listen | Closing,
    All = 0xFFFFFFFF,
}

/// <summary>
/// TCP counters from <c>struct tcp_info</c> (INET_DIAG_INFO). Fields the running kernel's
/// structure is too short for are 0 (<see cref="HasBytesSent"/> tells about the 4.19+ ones).
/// </summary>
public readonly record struct TcpCounters(
    ulong BytesAcked,
    ulong BytesReceived,
    ulong BytesSent,
    ulong BytesRetransmitted,
    uint TotalRetransmits,
    uint RttMicros,
    uint MinRttMicros,
    uint SegmentsOut,
    uint SegmentsIn,
    bool HasBytesSent)
{
    /// <summary>Payload bytes sent once (retransmissions not counted again): tcpi_bytes_sent −
    /// tcpi_bytes_retrans on 4.19+, else bytes acked less the SYN.</summary>
    public ulong PayloadBytesSent => HasBytesSent
        ? BytesSent - Math.Min(BytesSent, BytesRetransmitted)
        : BytesAcked - Math.Min(BytesAcked, 1UL);
}

/// <summary>
/// One socket as inet_diag describes it (<c>struct inet_diag_msg</c> and its attributes). From a
/// dump every field is filled; from a destroy notification the kernel leaves <see cref="Uid"/> and
/// <see cref="Inode"/> 0 (the socket has no file any more) and sends no cgroup: join on
/// <see cref="Cookie"/>, which is the same for the life of the socket.
/// </summary>
public readonly record struct InetSocket(
    AddressFamily Family,
    ProtocolType Protocol,
    SocketState State,
    IPAddress LocalAddress,
    int LocalPort,
    IPAddress RemoteAddress,
    int RemotePort,
    uint Interface,
    ulong Cookie,
    uint Uid,
    ulong Inode,
    ulong CgroupId,
    uint ReceiveQueue,
    uint SendQueue,
    TcpCounters? Tcp)
{
    public IPEndPoint Local => new(LocalAddress, LocalPort);

    public IPEndPoint Remote => new(RemoteAddress, RemotePort);

    public override string ToString() => $"{Protocol} {Local} -> {Remote} {State} uid {Uid} inode {Inode} cookie {Cookie}";
}
