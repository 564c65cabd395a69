using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using DaemonEye.Native.Netlink;
using DaemonEye.Native.SockDiag;

namespace DaemonEye.Native.Tests;

/// <summary>sock_diag against the real kernel: sockets this test opens on loopback, found in dumps
/// with their owner and counters, their final counters in destroy notifications (root), the
/// inode → pid map over the real /proc, and the per-namespace scope of the dump (root).</summary>
public sealed partial class SockDiagTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    internal static ulong InodeOf(Socket socket)
    {
        var link = new byte[64];
        var n = ReadLink(Encoding.ASCII.GetBytes($"/proc/self/fd/{socket.SafeHandle.DangerousGetHandle()}\0"), link, link.Length);
        Assert.True(n > 0, "readlink failed");
        Assert.True(SocketInodeMap.TryParseSocketLink(link.AsSpan(0, (int)n), out var inode), "not a socket link");
        return inode;
    }

    private static List<InetSocket> Dump(AddressFamily family, ProtocolType protocol, SocketStates states = SocketStates.All)
    {
        using var diag = SockDiagSocket.Open();
        var list = new List<InetSocket>();
        var result = diag.Dump(family, protocol, states, tcpInfo: true, list, CancellationToken.None);
        Assert.Equal(0, result.Malformed);
        Assert.Equal(list.Count, result.Sockets);
        return list;
    }

    private static (Socket Listener, Socket Client, Socket Server) Connect(IPAddress address)
    {
        var listener = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(address, 0));
        listener.Listen();
        var client = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        client.Connect(listener.LocalEndPoint!);
        var server = listener.Accept();
        return (listener, client, server);
    }

    private static void Transfer(Socket from, Socket to, int bytes)
    {
        from.Send(new byte[bytes]);
        var buffer = new byte[bytes];
        var got = 0;
        while (got < bytes)
        {
            got += to.Receive(buffer, got, bytes - got, SocketFlags.None);
        }
    }

    [Fact]
    public void A_dump_finds_a_listener_and_both_ends_of_a_loopback_connection_with_uid_inode_and_tcp_info()
    {
        var (listener, client, server) = Connect(IPAddress.Loopback);
        using var _ = listener;
        using var __ = client;
        using var ___ = server;
        Transfer(client, server, 1000);
        Transfer(server, client, 300);

        var sockets = Dump(AddressFamily.InterNetwork, ProtocolType.Tcp, SocketStates.FullSockets);
        var port = ((IPEndPoint)listener.LocalEndPoint!).Port;
        var l = Assert.Single(sockets, s => s.LocalPort == port && s.State == SocketState.Listen);
        Assert.Equal(InodeOf(listener), l.Inode);
        Assert.Equal(GetEuid(), l.Uid);
        Assert.Equal(IPAddress.Loopback, l.LocalAddress);
        Assert.Equal(ProtocolType.Tcp, l.Protocol);
        Assert.NotEqual(0UL, l.Cookie);

        var c = Assert.Single(sockets, s => s.Inode == InodeOf(client));
        Assert.Equal(SocketState.Established, c.State);
        Assert.Equal(client.LocalEndPoint, c.Local);
        Assert.Equal(listener.LocalEndPoint, c.Remote);
        Assert.NotNull(c.Tcp);
        Assert.True(c.Tcp!.Value.HasBytesSent, "kernel before 4.19: no tcpi_bytes_sent");
        Assert.Equal(1000UL, c.Tcp.Value.PayloadBytesSent);
        Assert.Equal(300UL, c.Tcp.Value.BytesReceived);
        Assert.True(c.Tcp.Value.RttMicros > 0);

        var s = Assert.Single(sockets, s => s.Inode == InodeOf(server));
        Assert.Equal(300UL, s.Tcp!.Value.PayloadBytesSent);
        Assert.Equal(1000UL, s.Tcp.Value.BytesReceived);
        Assert.NotEqual(c.Cookie, s.Cookie);
    }

    [Fact]
    public void A_dump_of_IPv6_UDP_finds_a_bound_socket_unconnected_and_a_connected_one()
    {
        using var bound = new Socket(AddressFamily.InterNetworkV6, SocketType.Dgram, ProtocolType.Udp);
        bound.Bind(new IPEndPoint(IPAddress.IPv6Loopback, 0));
        using var connected = new Socket(AddressFamily.InterNetworkV6, SocketType.Dgram, ProtocolType.Udp);
        connected.Connect(bound.LocalEndPoint!);

        var sockets = Dump(AddressFamily.InterNetworkV6, ProtocolType.Udp);
        var b = Assert.Single(sockets, s => s.Inode == InodeOf(bound));
        Assert.Equal(SocketState.Close, b.State);
        Assert.Equal(bound.LocalEndPoint, b.Local);
        Assert.Equal(0, b.RemotePort);
        Assert.Null(b.Tcp);
        Assert.Equal(ProtocolType.Udp, b.Protocol);
        var c = Assert.Single(sockets, s => s.Inode == InodeOf(connected));
        Assert.Equal(SocketState.Established, c.State);
        Assert.Equal(bound.LocalEndPoint, c.Remote);
    }

    [Fact]
    public void A_request_for_another_family_or_protocol_is_refused_clearly()
    {
        var buffer = new byte[128];
        var e = Assert.Throws<ArgumentException>(() => InetDiagMessage.WriteDumpRequest(buffer, AddressFamily.Unix, ProtocolType.Tcp, SocketStates.All, false));
        Assert.Contains("IPv4 or IPv6", e.Message, StringComparison.Ordinal);
        Assert.False(InetDiagMessage.TryParse(new byte[10], ProtocolType.Tcp, out _, out var error));
        Assert.Equal("inet_diag_msg of 10 bytes; at least 72 expected", error);
    }

    [RootFact]
    public void Destroy_notifications_carry_the_final_counters_of_a_connection_that_lived_a_moment()
    {
        using var destroyed = SockDiagDestroyListener.Open(tcp: true, udp: false, kernelReceiveBufferBytes: 4 << 20);
        var (listener, client, server) = Connect(IPAddress.Loopback);
        var cookies = Dump(AddressFamily.InterNetwork, ProtocolType.Tcp, SocketStates.FullSockets)
            .Where(s => s.Inode == InodeOf(client) || s.Inode == InodeOf(server)).ToDictionary(s => s.Inode == InodeOf(client) ? "client" : "server", s => s.Cookie);
        Transfer(client, server, 4321);
        Transfer(server, client, 1234);
        client.Dispose(); // the client closes first (FIN), then the server
        server.Dispose();
        listener.Dispose();

        var seen = new Dictionary<ulong, InetSocket>();
        var batch = new List<InetSocket>();
        using var timeout = new CancellationTokenSource(Patience);
        while (!seen.ContainsKey(cookies["client"]) || !seen.ContainsKey(cookies["server"]))
        {
            batch.Clear();
            Assert.Equal(NetlinkReceiveStatus.Messages, destroyed.Receive(batch, timeout.Token));
            batch.ForEach(s => seen[s.Cookie] = s);
        }

        var c = seen[cookies["client"]];
        Assert.Equal(ProtocolType.Tcp, c.Protocol);
        Assert.Equal(0UL, c.Inode); // the kernel says no more: the socket has no file
        Assert.Equal(4321UL, c.Tcp!.Value.PayloadBytesSent);
        Assert.Equal(1234UL + 1, c.Tcp.Value.BytesReceived); // the peer's FIN counts as one
        var s = seen[cookies["server"]];
        Assert.Equal(1234UL, s.Tcp!.Value.PayloadBytesSent);
        Assert.Equal(4321UL + 1, s.Tcp.Value.BytesReceived);
        Assert.Equal(0, destroyed.Socket.Overruns);
        Assert.Equal(0, destroyed.Malformed);
    }

    [Fact]
    public void The_inode_map_finds_this_process_and_a_child_that_holds_a_connection()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        var port = ((IPEndPoint)listener.LocalEndPoint!).Port;
        using var child = Process.Start(new ProcessStartInfo("bash", ["-c", $"exec 3<>/dev/tcp/127.0.0.1/{port}; read -r _"]) { RedirectStandardInput = true })!;
        try
        {
            using var accepted = listener.Accept();
            var peer = (IPEndPoint)accepted.RemoteEndPoint!;
            var childSocket = Dump(AddressFamily.InterNetwork, ProtocolType.Tcp, SocketStates.FullSockets).Single(s => s.LocalPort == peer.Port && s.RemotePort == port);

            var map = new SocketInodeMap();
            Assert.Equal(2, map.Resolve([InodeOf(listener), childSocket.Inode]));
            Assert.True(map.TryGetPid(InodeOf(listener), out var pid));
            Assert.Equal(Environment.ProcessId, pid);
            Assert.True(map.TryGetPid(childSocket.Inode, out pid));
            Assert.Equal(child.Id, pid);

            // Known inodes cost no further read of /proc.
            var scans = map.Scans;
            Assert.Equal(0, map.Resolve([InodeOf(listener)]));
            Assert.Equal(scans, map.Scans);

            // An inode no process holds: every process is read, nothing found, nothing guessed.
            Assert.Equal(0, map.Resolve([ulong.MaxValue]));
            Assert.False(map.TryGetPid(ulong.MaxValue, out _));
        }
        finally
        {
            child.Kill();
            child.WaitForExit();
        }
    }

    [RootFact]
    public void A_dump_sees_only_the_sockets_of_the_network_namespace_it_was_opened_in()
    {
        using var host = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        host.Bind(new IPEndPoint(IPAddress.Any, 0));
        host.Listen();
        var hostInode = InodeOf(host);

        // A thread of its own enters a new network namespace (namespaces are per thread), listens
        // there and dumps from there; the thread ends with the test.
        List<InetSocket>? inside = null;
        ulong insideInode = 0;
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                Assert.Equal(0, Unshare(0x40000000)); // CLONE_NEWNET
                using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                listener.Bind(new IPEndPoint(IPAddress.Any, 0));
                listener.Listen();
                insideInode = InodeOf(listener);
                inside = Dump(AddressFamily.InterNetwork, ProtocolType.Tcp);
            }
            catch (Exception e)
            {
                failure = e;
            }
        });
        thread.Start();
        thread.Join();
        Assert.Null(failure);

        Assert.Equal([insideInode], inside!.Select(s => s.Inode));
        var outside = Dump(AddressFamily.InterNetwork, ProtocolType.Tcp);
        Assert.Contains(outside, s => s.Inode == hostInode);
        Assert.DoesNotContain(outside, s => s.Inode == insideInode);
    }

    [LibraryImport("libc", EntryPoint = "readlink")]
    private static partial nint ReadLink(ReadOnlySpan<byte> path, Span<byte> buffer, nint size);

    [LibraryImport("libc", EntryPoint = "geteuid")]
    private static partial uint GetEuid();

    [LibraryImport("libc", EntryPoint = "unshare", SetLastError = true)]
    private static partial int Unshare(int flags);
}
