using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using DaemonEye.Native.Netlink;

namespace DaemonEye.Native.Tests;

/// <summary>The generic netlink socket against the real kernel: NETLINK_ROUTE for requests and
/// dumps (open to any user), NETLINK_CONNECTOR for multicast and overruns (root).</summary>
public sealed class NetlinkSocketTests
{
    private const int NetlinkRoute = 0;
    private const int NetlinkConnector = 11;
    private const ushort RtmGetLink = 18;
    private const ushort RtmNewLink = 16;
    private const ushort IflaIfname = 3;

    [Fact]
    public void Open_binds_to_a_kernel_assigned_port()
    {
        using var a = NetlinkSocket.Open(NetlinkRoute);
        using var b = NetlinkSocket.Open(NetlinkRoute);
        Assert.NotEqual(0u, a.PortId);
        Assert.NotEqual(a.PortId, b.PortId);
        Assert.Equal(NetlinkRoute, a.Protocol);
    }

    [Fact]
    public void Open_an_unknown_family_names_the_call_and_errno()
    {
        var e = Assert.Throws<KernelException>(() => NetlinkSocket.Open(31));
        Assert.Equal("socket(AF_NETLINK)", e.Call);
        Assert.Equal(93, e.Errno); // EPROTONOSUPPORT
    }

    [Fact]
    public void Dump_of_links_returns_loopback_and_ends_at_done()
    {
        using var socket = NetlinkSocket.Open(NetlinkRoute);
        Span<byte> buffer = stackalloc byte[64];
        var request = new NetlinkMessageWriter(buffer, RtmGetLink, 0);
        request.Append(16); // struct ifinfomsg, AF_UNSPEC: every link
        var names = new List<string>();
        var types = new HashSet<ushort>();
        var result = socket.Dump(request.Written, (in NetlinkMessage m) =>
        {
            types.Add(m.Type);
            var attributes = new NetlinkAttributes(m.Payload[16..]);
            while (attributes.MoveNext())
            {
                if (attributes.Type == IflaIfname)
                {
                    names.Add(Encoding.ASCII.GetString(attributes.Value.TrimEnd((byte)0)));
                }
            }
        }, CancellationToken.None);

        Assert.Contains("lo", names);
        Assert.Equal(names.Count, result.Messages);
        Assert.Equal([RtmNewLink], types);

        // A second dump on the same socket gets its own sequence and only its own answers.
        var again = socket.Dump(request.Written, (in NetlinkMessage _) => { }, CancellationToken.None);
        Assert.Equal(result.Messages, again.Messages);
        Assert.Equal(0, socket.Unmatched);
        Assert.Equal(0, socket.Overruns);
    }

    [Fact]
    public void Request_answered_with_an_error_throws_the_kernels_errno()
    {
        using var socket = NetlinkSocket.Open(NetlinkRoute);
        Span<byte> buffer = stackalloc byte[64];
        var request = new NetlinkMessageWriter(buffer, RtmGetLink, 0);
        var ifinfo = request.Append(16);
        BinaryPrimitives.WriteInt32LittleEndian(ifinfo[4..], int.MaxValue); // no such interface index
        var message = request.Written.ToArray();
        var e = Assert.Throws<KernelException>(() => socket.Request(message, null, CancellationToken.None));
        Assert.Equal(19, e.Errno); // ENODEV
    }

    [Fact]
    public void Request_hands_replies_over_and_returns_at_the_ack()
    {
        using var socket = NetlinkSocket.Open(NetlinkRoute);
        Span<byte> buffer = stackalloc byte[64];
        var request = new NetlinkMessageWriter(buffer, RtmGetLink, 0);
        var ifinfo = request.Append(16);
        BinaryPrimitives.WriteInt32LittleEndian(ifinfo[4..], 1); // loopback is index 1
        var replies = 0;
        socket.Request(request.Written, (in NetlinkMessage m) =>
        {
            Assert.Equal(RtmNewLink, m.Type);
            replies++;
        }, CancellationToken.None);
        Assert.Equal(1, replies);
    }

    [Fact]
    public void Receive_waiting_for_nothing_ends_when_cancelled()
    {
        using var socket = NetlinkSocket.Open(NetlinkRoute);
        using var cts = new CancellationTokenSource();
        var entered = new ManualResetEventSlim();
        Exception? caught = null;
        var thread = new Thread(() =>
        {
            entered.Set();
            try
            {
                socket.Receive(out _, cts.Token);
            }
            catch (Exception e)
            {
                caught = e;
            }
        });
        thread.Start();
        entered.Wait();
        cts.Cancel();
        Assert.True(thread.Join(TimeSpan.FromSeconds(30)));
        Assert.IsType<OperationCanceledException>(caught);
        Assert.Equal(NetlinkReceiveStatus.Empty, socket.TryReceive(out _));
    }

    [RootFact]
    public void Kernel_receive_buffer_is_sized_beyond_rmem_max_as_root()
    {
        using var socket = NetlinkSocket.Open(NetlinkRoute, new NetlinkSocketOptions { KernelReceiveBufferBytes = 8 << 20 });
        Assert.Equal(16 << 20, socket.KernelReceiveBufferBytes); // the kernel doubles it
        socket.SetKernelReceiveBuffer(1);
        Assert.InRange(socket.KernelReceiveBufferBytes, 1, 4096); // the kernel's minimum
    }

    [Fact]
    public void Groups_can_be_joined_and_left_after_bind()
    {
        using var socket = NetlinkSocket.Open(NetlinkRoute);
        socket.JoinGroup(1); // RTNLGRP_LINK
        socket.LeaveGroup(1);
        var e = Assert.Throws<KernelException>(() => socket.JoinGroup(100_000));
        Assert.Equal("setsockopt(NETLINK_ADD_MEMBERSHIP)", e.Call);
    }

    [RootFact]
    public void Overrun_is_reported_counted_and_the_socket_stays_usable()
    {
        // The proc connector's group with the smallest receive queue the kernel allows: the events of
        // 40 processes cannot fit, so the kernel drops some and says ENOBUFS.
        using var socket = NetlinkSocket.Open(NetlinkConnector, new NetlinkSocketOptions { Groups = 1, KernelReceiveBufferBytes = 1 });
        Span<byte> buffer = stackalloc byte[64];
        var listen = new NetlinkMessageWriter(buffer, NetlinkConstants.Done, 0);
        var cn = listen.Append(24);
        BinaryPrimitives.WriteUInt32LittleEndian(cn, 1);      // cb_id.idx = CN_IDX_PROC
        BinaryPrimitives.WriteUInt32LittleEndian(cn[4..], 1); // cb_id.val = CN_VAL_PROC
        BinaryPrimitives.WriteUInt16LittleEndian(cn[16..], 4); // len
        BinaryPrimitives.WriteUInt32LittleEndian(cn[20..], 1); // PROC_CN_MCAST_LISTEN
        socket.Send(listen.Written);
        try
        {
            for (var i = 0; i < 40; i++)
            {
                using var child = Process.Start(new ProcessStartInfo("/bin/true") { UseShellExecute = false })!;
                child.WaitForExit();
            }

            var overruns = 0;
            var datagrams = 0;
            while (socket.TryReceive(out _) is var status && status != NetlinkReceiveStatus.Empty)
            {
                if (status == NetlinkReceiveStatus.Overrun)
                {
                    overruns++;
                }
                else
                {
                    datagrams++;
                }
            }

            Assert.True(overruns >= 1, $"no overrun after 40 processes ({datagrams} datagrams)");
            Assert.Equal(overruns, socket.Overruns);

            // Still usable: with room in the queue, the next process's events arrive.
            socket.SetKernelReceiveBuffer(1 << 20);
            using (var child = Process.Start(new ProcessStartInfo("/bin/true") { UseShellExecute = false })!)
            {
                child.WaitForExit();
            }

            Assert.Equal(NetlinkReceiveStatus.Messages, socket.Receive(out var messages, CancellationToken.None));
            Assert.True(messages.Bytes > 0);
        }
        finally
        {
            BinaryPrimitives.WriteUInt32LittleEndian(cn[20..], 2); // PROC_CN_MCAST_IGNORE
            socket.Send(listen.Written);
        }
    }

    [Fact]
    public void Message_walk_stops_at_a_header_that_does_not_fit_and_says_so()
    {
        var datagram = new byte[16 + 20 + 8];
        BinaryPrimitives.WriteUInt32LittleEndian(datagram, 18); // 16 + 2 bytes of payload, padded to 20
        BinaryPrimitives.WriteUInt16LittleEndian(datagram.AsSpan(4), 77);
        BinaryPrimitives.WriteUInt32LittleEndian(datagram.AsSpan(20), 200); // claims more than is left
        var e = new NetlinkMessages(datagram).GetEnumerator();
        Assert.True(e.MoveNext());
        Assert.Equal(77, e.Current.Type);
        Assert.Equal(2, e.Current.Payload.Length);
        Assert.False(e.MoveNext());
        Assert.True(e.Malformed);
        Assert.False(new NetlinkMessages(datagram).IsWellFormed);
        Assert.True(new NetlinkMessages(datagram.AsSpan(0, 20)).IsWellFormed);
    }

    [Fact]
    public void Writer_keeps_the_length_whole_and_aligns_attributes()
    {
        Span<byte> buffer = stackalloc byte[64];
        var writer = new NetlinkMessageWriter(buffer, 20, NetlinkConstants.FlagRequest);
        writer.AppendAttribute(5, [1, 2, 3]);
        writer.AppendAttribute(6, [9]);
        Assert.Equal(16 + 8 + 8, writer.Written.Length);
        Assert.Equal((uint)writer.Written.Length, BinaryPrimitives.ReadUInt32LittleEndian(writer.Written));
        var message = new NetlinkMessage(writer.Written);
        var attributes = new NetlinkAttributes(message.Payload);
        Assert.True(attributes.MoveNext());
        Assert.Equal(5, attributes.Type);
        Assert.Equal(new byte[] { 1, 2, 3 }, attributes.Value.ToArray());
        Assert.True(attributes.MoveNext());
        Assert.Equal(6, attributes.Type);
        Assert.False(attributes.MoveNext());
        Assert.False(attributes.Malformed);
        try
        {
            var small = new NetlinkMessageWriter(new byte[20], 1, 0);
            small.Append(8);
            Assert.Fail("no error for a full buffer");
        }
        catch (ArgumentException)
        {
        }
    }
}
