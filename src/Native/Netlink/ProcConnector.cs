using System.Buffers.Binary;
using System.Text;

namespace DaemonEye.Native.Netlink;

/// <summary>
/// The kernel's process events connector (NETLINK_CONNECTOR, group CN_IDX_PROC): fork, exec, exit,
/// uid/gid/sid changes, ptrace and comm changes of every process, as they happen. Needs
/// CAP_NET_ADMIN in the initial network namespace; <see cref="Open"/> says clearly when the kernel
/// refuses. Events the kernel dropped because this socket's queue was full are reported as
/// <see cref="NetlinkReceiveStatus.Overrun"/> and estimated from the per-CPU sequence numbers
/// (<see cref="Lost"/>). One thread reads.
/// </summary>
public sealed class ProcConnector : IDisposable
{
    public const int NetlinkConnector = 11;
    private const uint CnIdxProc = 1;
    private const uint CnValProc = 1;
    private const int CnMsgSize = 20;
    private const uint McastListen = 1;
    private const uint McastIgnore = 2;
    private const int EventHeader = 16;

    private readonly NetlinkSocket _socket;
    private readonly List<ulong> _nextSequence = [];
    private long _events;
    private long _lost;
    private long _malformed;
    private long _beforeListen;
    private bool _listening;

    private ProcConnector(NetlinkSocket socket) => _socket = socket;

    /// <summary>The socket under the connector (counters, kernel queue size).</summary>
    public NetlinkSocket Socket => _socket;

    public long Events => Interlocked.Read(ref _events);

    /// <summary>Events the kernel numbered but this reader never saw (gaps in a CPU's sequence):
    /// what overruns cost.</summary>
    public long Lost => Interlocked.Read(ref _lost);

    /// <summary>Messages too short for what their kind needs, or of a kind this code does not know.</summary>
    public long Malformed => Interlocked.Read(ref _malformed);

    /// <summary>Events of other listeners' subscriptions that arrived before ours was acknowledged
    /// (not delivered: they precede the start).</summary>
    public long EventsBeforeListen => Interlocked.Read(ref _beforeListen);

    /// <summary>Opens the connector and subscribes (PROC_CN_MCAST_LISTEN); returns once the kernel
    /// acknowledged it.</summary>
    /// <param name="kernelReceiveBufferBytes">The kernel queue for events (SO_RCVBUF), null for the default.</param>
    /// <exception cref="KernelException">The kernel refused (EPERM: not privileged) or did not
    /// acknowledge (not root, or not in the initial network namespace).</exception>
    public static ProcConnector Open(int? kernelReceiveBufferBytes = null)
    {
        var socket = NetlinkSocket.Open(NetlinkConnector, new NetlinkSocketOptions
        {
            Groups = CnIdxProc,
            DatagramBufferBytes = 16 * 1024,
            KernelReceiveBufferBytes = kernelReceiveBufferBytes,
        });
        var connector = new ProcConnector(socket);
        try
        {
            connector.Subscribe(McastListen);
            connector.AwaitAcknowledgement();
            return connector;
        }
        catch
        {
            connector.Dispose();
            throw;
        }
    }

    private void Subscribe(uint operation)
    {
        Span<byte> buffer = stackalloc byte[NetlinkConstants.HeaderSize + CnMsgSize + 4];
        var writer = new NetlinkMessageWriter(buffer, NetlinkConstants.Done, 0);
        var cn = writer.Append(CnMsgSize + 4);
        BinaryPrimitives.WriteUInt32LittleEndian(cn, CnIdxProc);
        BinaryPrimitives.WriteUInt32LittleEndian(cn[4..], CnValProc);
        BinaryPrimitives.WriteUInt32LittleEndian(cn[8..], _socket.NextSequence());
        BinaryPrimitives.WriteUInt16LittleEndian(cn[16..], 4);
        BinaryPrimitives.WriteUInt32LittleEndian(cn[CnMsgSize..], operation);
        writer.SetSequence(_socket.NextSequence());
        _socket.Send(writer.Written);
    }

    /// <summary>The kernel answers a listen request at once, on the sending thread: the
    /// acknowledgement is queued when send returns, or never comes.</summary>
    private void AwaitAcknowledgement()
    {
        var events = new List<ProcEvent>();
        while (true)
        {
            events.Clear();
            var status = _socket.TryReceive(out var messages);
            if (status == NetlinkReceiveStatus.Empty)
            {
                throw new KernelException("PROC_CN_MCAST_LISTEN: the kernel did not acknowledge the subscription (not root, or not in the initial network namespace)");
            }

            if (status == NetlinkReceiveStatus.Overrun)
            {
                continue;
            }

            Decode(messages, events);
            foreach (var e in events)
            {
                if (e.Kind == ProcEventKind.None)
                {
                    if (e.AckError != 0)
                    {
                        throw new KernelException("PROC_CN_MCAST_LISTEN", e.AckError);
                    }

                    _listening = true;
                    return;
                }

                Interlocked.Increment(ref _beforeListen);
            }
        }
    }

    /// <summary>Waits for the next datagram and appends its events to <paramref name="events"/>.</summary>
    public NetlinkReceiveStatus Read(List<ProcEvent> events, CancellationToken cancellationToken)
    {
        var status = _socket.Receive(out var messages, cancellationToken);
        if (status == NetlinkReceiveStatus.Messages)
        {
            Decode(messages, events);
        }

        return status;
    }

    /// <summary>Appends the events of one queued datagram, if any, without waiting.</summary>
    public NetlinkReceiveStatus TryRead(List<ProcEvent> events)
    {
        var status = _socket.TryReceive(out var messages);
        if (status == NetlinkReceiveStatus.Messages)
        {
            Decode(messages, events);
        }

        return status;
    }

    /// <summary>Wakes a <see cref="Read"/> waiting on another thread.</summary>
    public void Wake() => _socket.Wake();

    private void Decode(NetlinkMessages messages, List<ProcEvent> events)
    {
        foreach (var message in messages)
        {
            if (message.Type is NetlinkConstants.Error or NetlinkConstants.NoOp)
            {
                continue;
            }

            if (TryDecode(message.Payload, out var e, out var sequence))
            {
                if (e.Kind != ProcEventKind.None)
                {
                    TrackSequence(e.Cpu, sequence);
                    Interlocked.Increment(ref _events);
                }

                events.Add(e);
            }
            else
            {
                Interlocked.Increment(ref _malformed);
            }
        }
    }

    /// <summary>The connector numbers events per CPU; a gap is events this socket lost.</summary>
    private void TrackSequence(uint cpu, uint sequence)
    {
        if (cpu > 65_535)
        {
            return;
        }

        while (_nextSequence.Count <= cpu)
        {
            _nextSequence.Add(0);
        }

        var expected = _nextSequence[(int)cpu];
        if (expected != 0 && sequence + 1UL > expected)
        {
            Interlocked.Add(ref _lost, (long)(sequence + 1UL - expected));
        }

        _nextSequence[(int)cpu] = sequence + 2UL; // stored + 1 so that 0 means "not seen yet"
    }

    /// <summary>Decodes one connector message (cn_msg + proc_event).</summary>
    internal static bool TryDecode(ReadOnlySpan<byte> payload, out ProcEvent e, out uint sequence)
    {
        e = default;
        sequence = 0;
        if (payload.Length < CnMsgSize + EventHeader
            || BinaryPrimitives.ReadUInt32LittleEndian(payload) != CnIdxProc
            || BinaryPrimitives.ReadUInt32LittleEndian(payload[4..]) != CnValProc)
        {
            return false;
        }

        sequence = BinaryPrimitives.ReadUInt32LittleEndian(payload[8..]);
        var length = BinaryPrimitives.ReadUInt16LittleEndian(payload[16..]);
        var ev = payload[CnMsgSize..];
        if (length < ev.Length)
        {
            ev = ev[..length];
        }

        var kind = (ProcEventKind)BinaryPrimitives.ReadUInt32LittleEndian(ev);
        var cpu = BinaryPrimitives.ReadUInt32LittleEndian(ev[4..]);
        var timestamp = BinaryPrimitives.ReadUInt64LittleEndian(ev[8..]);
        var data = ev[EventHeader..];
        var need = kind switch
        {
            ProcEventKind.None => 4,
            ProcEventKind.Exec or ProcEventKind.Sid => 8,
            ProcEventKind.Fork or ProcEventKind.Uid or ProcEventKind.Gid or ProcEventKind.Ptrace or ProcEventKind.Coredump => 16,
            ProcEventKind.Comm => 24,
            ProcEventKind.Exit => 24,
            _ => int.MaxValue,
        };
        if (data.Length < need)
        {
            return false;
        }

        e = kind switch
        {
            ProcEventKind.None => new ProcEvent(kind, cpu, timestamp, 0, 0, 0, 0, U(data, 0), 0, null),
            ProcEventKind.Fork => new ProcEvent(kind, cpu, timestamp, I(data, 8), I(data, 12), I(data, 0), I(data, 4), 0, 0, null),
            ProcEventKind.Exec or ProcEventKind.Sid => new ProcEvent(kind, cpu, timestamp, I(data, 0), I(data, 4), 0, 0, 0, 0, null),
            ProcEventKind.Uid or ProcEventKind.Gid => new ProcEvent(kind, cpu, timestamp, I(data, 0), I(data, 4), 0, 0, U(data, 8), U(data, 12), null),
            ProcEventKind.Ptrace => new ProcEvent(kind, cpu, timestamp, I(data, 0), I(data, 4), I(data, 8), I(data, 12), 0, 0, null),
            ProcEventKind.Comm => new ProcEvent(kind, cpu, timestamp, I(data, 0), I(data, 4), 0, 0, 0, 0, CString(data.Slice(8, 16))),
            ProcEventKind.Coredump => new ProcEvent(kind, cpu, timestamp, I(data, 0), I(data, 4), I(data, 8), I(data, 12), 0, 0, null),
            _ => new ProcEvent(kind, cpu, timestamp, I(data, 0), I(data, 4), I(data, 16), I(data, 20), U(data, 8), U(data, 12), null), // Exit
        };
        return true;
    }

    private static int I(ReadOnlySpan<byte> data, int at) => BinaryPrimitives.ReadInt32LittleEndian(data[at..]);

    private static uint U(ReadOnlySpan<byte> data, int at) => BinaryPrimitives.ReadUInt32LittleEndian(data[at..]);

    private static string CString(ReadOnlySpan<byte> bytes)
    {
        var end = bytes.IndexOf((byte)0);
        return Encoding.UTF8.GetString(end < 0 ? bytes : bytes[..end]);
    }

    public void Dispose()
    {
        if (_listening)
        {
            _listening = false;
            try
            {
                // The kernel counts listeners; a socket closed without IGNORE leaves the count high.
                Subscribe(McastIgnore);
            }
            catch (KernelException)
            {
            }
        }

        _socket.Dispose();
    }
}
