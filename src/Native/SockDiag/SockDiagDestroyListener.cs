using System.Net.Sockets;
using DaemonEye.Native.Netlink;

namespace DaemonEye.Native.SockDiag;

/// <summary>
/// The sock_diag destroy broadcasts (SKNLGRP_INET_TCP_DESTROY, SKNLGRP_INET_UDP_DESTROY and their
/// IPv6 twins, the source of <c>ss -E</c>): the final state of every TCP and UDP socket of this
/// network namespace as the kernel frees it, tcp_info included, however short its life. The kernel
/// sends no uid, inode or cgroup then (the socket has no file any more): join on the cookie.
/// Needs CAP_NET_ADMIN. Notifications the kernel dropped because the queue was full are counted
/// (<see cref="NetlinkSocket.Overruns"/>); while anyone listens, the kernel frees sockets through a
/// work queue, so listening has a cost. One thread reads.
/// </summary>
public sealed class SockDiagDestroyListener : IDisposable
{
    /// <summary>SKNLGRP_INET_TCP_DESTROY .. SKNLGRP_INET6_UDP_DESTROY (linux/sock_diag.h).</summary>
    public const uint GroupInetTcp = 1;
    public const uint GroupInetUdp = 2;
    public const uint GroupInet6Tcp = 3;
    public const uint GroupInet6Udp = 4;

    private readonly NetlinkSocket _socket;
    private long _notifications;
    private long _malformed;

    private SockDiagDestroyListener(NetlinkSocket socket) => _socket = socket;

    public NetlinkSocket Socket => _socket;

    /// <summary>Notifications parsed and handed out.</summary>
    public long Notifications => Interlocked.Read(ref _notifications);

    /// <summary>Notifications that did not parse (counted, skipped).</summary>
    public long Malformed => Interlocked.Read(ref _malformed);

    public string? LastError { get; private set; }

    /// <summary>Joins the destroy groups of the protocols asked for.</summary>
    /// <param name="tcp">TCP sockets (IPv4 and IPv6).</param>
    /// <param name="udp">UDP sockets (IPv4 and IPv6).</param>
    /// <param name="kernelReceiveBufferBytes">The kernel's queue for notifications; a burst of short
    /// connections needs a few hundred bytes each. Null: the system default.</param>
    /// <exception cref="KernelException">EPERM: CAP_NET_ADMIN is missing.</exception>
    public static SockDiagDestroyListener Open(bool tcp, bool udp, int? kernelReceiveBufferBytes)
    {
        if (!tcp && !udp)
        {
            throw new ArgumentException("listen to TCP, UDP or both");
        }

        var socket = NetlinkSocket.Open(SockDiagSocket.NetlinkSockDiag, new NetlinkSocketOptions
        {
            DatagramBufferBytes = 64 * 1024,
            KernelReceiveBufferBytes = kernelReceiveBufferBytes,
        });
        try
        {
            if (tcp)
            {
                socket.JoinGroup(GroupInetTcp);
                socket.JoinGroup(GroupInet6Tcp);
            }

            if (udp)
            {
                socket.JoinGroup(GroupInetUdp);
                socket.JoinGroup(GroupInet6Udp);
            }

            return new SockDiagDestroyListener(socket);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Waits for the next datagram and appends its notifications to <paramref name="into"/>.
    /// <see cref="NetlinkReceiveStatus.Overrun"/>: the kernel dropped notifications (counted).</summary>
    public NetlinkReceiveStatus Receive(List<InetSocket> into, CancellationToken cancellationToken) =>
        Collect(_socket.Receive(out var messages, cancellationToken), messages, into);

    /// <summary>As <see cref="Receive"/> without waiting: <see cref="NetlinkReceiveStatus.Empty"/> when nothing is queued.</summary>
    public NetlinkReceiveStatus TryReceive(List<InetSocket> into) => Collect(_socket.TryReceive(out var messages), messages, into);

    /// <summary>Wakes a <see cref="Receive"/> waiting on another thread.</summary>
    public void Wake() => _socket.Wake();

    private NetlinkReceiveStatus Collect(NetlinkReceiveStatus status, NetlinkMessages messages, List<InetSocket> into)
    {
        if (status != NetlinkReceiveStatus.Messages)
        {
            return status;
        }

        foreach (var m in messages)
        {
            string? error = null;
            if (m.Type == InetDiagMessage.SockDiagByFamily && InetDiagMessage.TryParse(m.Payload, ProtocolType.Unknown, out var socket, out error))
            {
                into.Add(socket);
                Interlocked.Increment(ref _notifications);
            }
            else
            {
                Interlocked.Increment(ref _malformed);
                LastError = m.Type == InetDiagMessage.SockDiagByFamily ? error : $"message type {m.Type} among destroy notifications";
            }
        }

        return status;
    }

    public void Dispose() => _socket.Dispose();
}
