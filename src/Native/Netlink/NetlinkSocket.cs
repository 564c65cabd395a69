using System.Runtime.InteropServices;
using static DaemonEye.Native.Netlink.NetlinkInterop;

namespace DaemonEye.Native.Netlink;

/// <summary>How <see cref="NetlinkSocket"/> is opened.</summary>
public sealed class NetlinkSocketOptions
{
    /// <summary>Multicast groups 1..32 as a bit mask (bit n-1 for group n), joined at bind. Higher
    /// groups: <see cref="NetlinkSocket.JoinGroup"/>.</summary>
    public uint Groups { get; init; }

    /// <summary>The user-space buffer one datagram is received into (pinned, reused for every
    /// receive). Dumps send datagrams of up to about 32 KiB.</summary>
    public int DatagramBufferBytes { get; init; } = 64 * 1024;

    /// <summary>The kernel's receive queue (SO_RCVBUF; SO_RCVBUFFORCE when the caller may pass
    /// rmem_max). Null keeps the system default. The kernel doubles the value and enforces a
    /// minimum of about 2 KiB.</summary>
    public int? KernelReceiveBufferBytes { get; init; }
}

/// <summary>What one receive gave.</summary>
public enum NetlinkReceiveStatus
{
    /// <summary>A datagram; its messages are in the out parameter.</summary>
    Messages,

    /// <summary>ENOBUFS: the kernel's receive queue overflowed and messages were lost (counted in
    /// <see cref="NetlinkSocket.Overruns"/>). The socket stays usable; what was lost must be
    /// recovered another way (a dump, a rescan).</summary>
    Overrun,

    /// <summary>Nothing queued (non-blocking receives only).</summary>
    Empty,
}

/// <summary>
/// A netlink socket (<c>socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, protocol)</c>) bound to a
/// kernel-assigned port: multicast listening (groups at bind or joined later), requests and dumps
/// numbered by sequence (<c>NetlinkSocket.Request.cs</c>), and receives into one pinned buffer,
/// walked as <see cref="NetlinkMessages"/>. Overruns (ENOBUFS), truncated datagrams and malformed
/// headers are counted, never passed over silently.
/// Threading: sends may come from any thread; one thread receives at a time (a request or dump
/// receives too, so do not share a listening socket with requests).
/// </summary>
public sealed partial class NetlinkSocket : IDisposable
{
    private readonly KernelFile _socket;
    private readonly KernelFile _wake;
    private readonly byte[] _buffer;
    private int _sequence;
    private long _datagrams;
    private long _messages;
    private long _overruns;
    private long _truncated;
    private long _malformed;
    private long _unmatched;

    private NetlinkSocket(int protocol, KernelFile socket, KernelFile wake, int bufferBytes)
    {
        Protocol = protocol;
        _socket = socket;
        _wake = wake;
        _buffer = GC.AllocateUninitializedArray<byte>(bufferBytes, pinned: true);
        _sequence = Environment.TickCount & 0x3FFFFFFF;
    }

    /// <summary>The netlink family (NETLINK_ROUTE 0, NETLINK_SOCK_DIAG 4, NETLINK_CONNECTOR 11, ...).</summary>
    public int Protocol { get; }

    /// <summary>The port the kernel assigned at bind (nl_pid).</summary>
    public uint PortId { get; private set; }

    /// <summary>The underlying descriptor, for diagnostics.</summary>
    public int Fd => _socket.Fd;

    public long Datagrams => Interlocked.Read(ref _datagrams);

    public long MessagesReceived => Interlocked.Read(ref _messages);

    /// <summary>Receives that failed with ENOBUFS: the kernel dropped messages for this socket.</summary>
    public long Overruns => Interlocked.Read(ref _overruns);

    /// <summary>Datagrams larger than the buffer (their tail was lost).</summary>
    public long Truncated => Interlocked.Read(ref _truncated);

    /// <summary>Datagrams with a header that does not fit (the rest of the datagram was skipped).</summary>
    public long Malformed => Interlocked.Read(ref _malformed);

    /// <summary>Messages a request or dump received that did not answer it (another sequence or sender).</summary>
    public long Unmatched => Interlocked.Read(ref _unmatched);

    /// <summary>Opens and binds a socket of <paramref name="protocol"/>.</summary>
    /// <exception cref="KernelException">socket, bind or setsockopt failed (EPROTONOSUPPORT: the
    /// family is not in this kernel; EPERM: a group needs privileges).</exception>
    public static NetlinkSocket Open(int protocol, NetlinkSocketOptions? options = null)
    {
        options ??= new NetlinkSocketOptions();
        if (options.DatagramBufferBytes < 4096)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.DatagramBufferBytes, "DatagramBufferBytes must be at least 4096");
        }

        var fd = Socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, protocol);
        if (fd < 0)
        {
            throw KernelException.FromLastError("socket(AF_NETLINK)");
        }

        var socket = new KernelFile(fd);
        KernelFile? wake = null;
        try
        {
            var efd = EventFd(0, EFD_CLOEXEC | EFD_NONBLOCK);
            if (efd < 0)
            {
                throw KernelException.FromLastError("eventfd");
            }

            wake = new KernelFile(efd);
            var result = new NetlinkSocket(protocol, socket, wake, options.DatagramBufferBytes);
            if (options.KernelReceiveBufferBytes is { } rcvbuf)
            {
                result.SetKernelReceiveBuffer(rcvbuf);
            }

            var address = new SockaddrNl { Family = AF_NETLINK, Groups = options.Groups };
            if (Bind(fd, address, Marshal.SizeOf<SockaddrNl>()) != 0)
            {
                throw KernelException.FromLastError("bind(AF_NETLINK)");
            }

            var length = Marshal.SizeOf<SockaddrNl>();
            if (GetSockName(fd, out var bound, ref length) != 0)
            {
                throw KernelException.FromLastError("getsockname(AF_NETLINK)");
            }

            result.PortId = bound.PortId;
            return result;
        }
        catch
        {
            socket.Dispose();
            wake?.Dispose();
            throw;
        }
    }

    /// <summary>Joins multicast group <paramref name="group"/> (any number, also above 32).</summary>
    public void JoinGroup(uint group) => SetOption(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, (int)group, "setsockopt(NETLINK_ADD_MEMBERSHIP)");

    public void LeaveGroup(uint group) => SetOption(SOL_NETLINK, NETLINK_DROP_MEMBERSHIP, (int)group, "setsockopt(NETLINK_DROP_MEMBERSHIP)");

    /// <summary>The kernel's receive queue size as the kernel reports it (twice what was asked,
    /// for its bookkeeping).</summary>
    public int KernelReceiveBufferBytes
    {
        get
        {
            var length = sizeof(int);
            if (GetSockOpt(_socket.Fd, SOL_SOCKET, SO_RCVBUF, out var value, ref length) != 0)
            {
                throw KernelException.FromLastError("getsockopt(SO_RCVBUF)");
            }

            return value;
        }
    }

    /// <summary>Sizes the kernel's receive queue: SO_RCVBUFFORCE (beyond rmem_max, needs
    /// CAP_NET_ADMIN), else SO_RCVBUF (capped at rmem_max).</summary>
    public void SetKernelReceiveBuffer(int bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        if (SetSockOpt(_socket.Fd, SOL_SOCKET, SO_RCVBUFFORCE, bytes, sizeof(int)) != 0)
        {
            SetOption(SOL_SOCKET, SO_RCVBUF, bytes, "setsockopt(SO_RCVBUF)");
        }
    }

    private void SetOption(int level, int name, int value, string call)
    {
        if (SetSockOpt(_socket.Fd, level, name, value, sizeof(int)) != 0)
        {
            throw KernelException.FromLastError(call);
        }
    }

    /// <summary>A fresh sequence number for a request.</summary>
    public uint NextSequence() => (uint)Interlocked.Increment(ref _sequence);

    /// <summary>Sends one or more whole messages to the kernel (port 0).</summary>
    public unsafe void Send(ReadOnlySpan<byte> messages)
    {
        var kernel = new SockaddrNl { Family = AF_NETLINK };
        fixed (byte* p = messages)
        {
            while (true)
            {
                var n = SendTo(_socket.Fd, p, messages.Length, 0, kernel, Marshal.SizeOf<SockaddrNl>());
                if (n >= 0)
                {
                    return;
                }

                var errno = Marshal.GetLastPInvokeError();
                if (errno != EINTR)
                {
                    throw new KernelException("sendto(AF_NETLINK)", errno);
                }
            }
        }
    }

    /// <summary>Receives one datagram, waiting for it. The messages are a view of this socket's
    /// buffer, valid until the next receive.</summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while waiting.</exception>
    public NetlinkReceiveStatus Receive(out NetlinkMessages messages, CancellationToken cancellationToken)
    {
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var status = TryReceive(out messages);
            if (status != NetlinkReceiveStatus.Empty)
            {
                return status;
            }

            WaitReadable(cancellationToken);
        }
    }

    /// <summary>Receives one datagram if one is queued (MSG_DONTWAIT).</summary>
    public unsafe NetlinkReceiveStatus TryReceive(out NetlinkMessages messages)
    {
        messages = default;
        nint n;
        fixed (byte* p = _buffer)
        {
            do
            {
                n = Recv(_socket.Fd, p, _buffer.Length, MSG_DONTWAIT | MSG_TRUNC);
            }
            while (n < 0 && Marshal.GetLastPInvokeError() == EINTR);
        }

        if (n < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            switch (errno)
            {
                case EAGAIN:
                    return NetlinkReceiveStatus.Empty;
                case ENOBUFS:
                    Interlocked.Increment(ref _overruns);
                    return NetlinkReceiveStatus.Overrun;
                default:
                    throw new KernelException("recv(AF_NETLINK)", errno);
            }
        }

        var length = (int)n;
        if (length > _buffer.Length)
        {
            Interlocked.Increment(ref _truncated);
            length = _buffer.Length;
        }

        messages = new NetlinkMessages(_buffer.AsSpan(0, length));
        Interlocked.Increment(ref _datagrams);
        var count = 0;
        var e = messages.GetEnumerator();
        while (e.MoveNext())
        {
            count++;
        }

        Interlocked.Add(ref _messages, count);
        if (e.Malformed && n <= _buffer.Length)
        {
            Interlocked.Increment(ref _malformed);
        }

        return NetlinkReceiveStatus.Messages;
    }

    /// <summary>Wakes a <see cref="Receive"/> waiting on another thread (it then checks its token).</summary>
    public void Wake()
    {
        if (Write(_wake.Fd, 1UL, sizeof(ulong)) < 0 && Marshal.GetLastPInvokeError() != EAGAIN)
        {
            throw KernelException.FromLastError("write(eventfd)");
        }
    }

    private unsafe void WaitReadable(CancellationToken cancellationToken)
    {
        using var registration = cancellationToken.CanBeCanceled ? cancellationToken.UnsafeRegister(static s => ((NetlinkSocket)s!).Wake(), this) : default;
        var fds = stackalloc PollFd[2];
        fds[0] = new PollFd { Fd = _socket.Fd, Events = POLLIN };
        fds[1] = new PollFd { Fd = _wake.Fd, Events = POLLIN };
        while (Poll(fds, 2, -1) < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno != EINTR)
            {
                throw new KernelException("poll(AF_NETLINK)", errno);
            }
        }

        if (fds[1].Revents != 0)
        {
            _ = Read(_wake.Fd, out _, sizeof(ulong));
            cancellationToken.ThrowIfCancellationRequested();
        }
    }

    public void Dispose()
    {
        _socket.Dispose();
        _wake.Dispose();
    }
}
