using System.Net.Sockets;
using DaemonEye.Native.Netlink;

namespace DaemonEye.Native.SockDiag;

/// <summary>What one inet_diag dump gave.</summary>
/// <param name="Sockets">Sockets handed to the caller.</param>
/// <param name="Malformed">Answers that did not parse (counted, skipped).</param>
/// <param name="Interrupted">The kernel flagged the dump NLM_F_DUMP_INTR: the table changed while
/// it was read, so a socket may be missing or doubled; the next dump corrects it.</param>
public readonly record struct SockDiagDumpResult(int Sockets, int Malformed, bool Interrupted);

/// <summary>
/// NETLINK_SOCK_DIAG dumps of the TCP and UDP sockets of the caller's network namespace (the
/// kernel scopes sock_diag to the namespace of the thread that opened the socket), over
/// <see cref="NetlinkSocket"/>. Any user may dump; tcp_info and the owner's uid come with it.
/// One thread at a time.
/// </summary>
public sealed class SockDiagSocket : IDisposable
{
    public const int NetlinkSockDiag = 4;

    private readonly NetlinkSocket _socket;
    private readonly byte[] _request = new byte[NetlinkConstants.HeaderSize + InetDiagMessage.RequestSize];
    private long _malformed;

    private SockDiagSocket(NetlinkSocket socket) => _socket = socket;

    /// <summary>The netlink socket under it (counters).</summary>
    public NetlinkSocket Socket => _socket;

    /// <summary>Answers that did not parse, over the socket's life.</summary>
    public long Malformed => Interlocked.Read(ref _malformed);

    /// <summary>The last message that did not parse, for a log line.</summary>
    public string? LastError { get; private set; }

    public static SockDiagSocket Open() => new(NetlinkSocket.Open(NetlinkSockDiag, new NetlinkSocketOptions { DatagramBufferBytes = 64 * 1024 }));

    /// <summary>Dumps the <paramref name="protocol"/> sockets of <paramref name="family"/> in
    /// <paramref name="states"/> into <paramref name="into"/> (appended).</summary>
    /// <exception cref="KernelException">The kernel refused the dump.</exception>
    public SockDiagDumpResult Dump(AddressFamily family, ProtocolType protocol, SocketStates states, bool tcpInfo, List<InetSocket> into, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(into);
        var length = InetDiagMessage.WriteDumpRequest(_request, family, protocol, states, tcpInfo);
        var before = into.Count;
        var malformed = 0;
        var result = _socket.Dump(_request.AsSpan(0, length), (in NetlinkMessage m) =>
        {
            string? error = null;
            if (m.Type == InetDiagMessage.SockDiagByFamily && InetDiagMessage.TryParse(m.Payload, protocol, out var socket, out error))
            {
                into.Add(socket);
            }
            else
            {
                malformed++;
                LastError = m.Type == InetDiagMessage.SockDiagByFamily ? error : $"message type {m.Type} in an inet_diag dump";
            }
        }, cancellationToken);
        Interlocked.Add(ref _malformed, malformed);
        return new SockDiagDumpResult(into.Count - before, malformed, result.Interrupted);
    }

    public void Dispose() => _socket.Dispose();
}
