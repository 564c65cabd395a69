using System.Buffers.Binary;

namespace DaemonEye.Native.Netlink;

/// <summary>Receives one message of a reply; the message is a view valid only during the call.</summary>
public delegate void NetlinkMessageHandler(in NetlinkMessage message);

/// <summary>How a dump ended.</summary>
/// <param name="Messages">Messages handed to the handler.</param>
/// <param name="Interrupted">The kernel flagged the dump NLM_F_DUMP_INTR: the table changed while
/// it was read, so the result may be inconsistent; dump again if that matters.</param>
public readonly record struct NetlinkDumpResult(int Messages, bool Interrupted);

/// <summary>Requests and dumps: numbered by sequence, answered by the kernel on this socket.</summary>
public sealed partial class NetlinkSocket
{
    private const ushort FlagDumpInterrupted = 0x10;

    /// <summary>
    /// Sends <paramref name="message"/> (one whole message, e.g. from <see cref="NetlinkMessageWriter"/>)
    /// with NLM_F_REQUEST | NLM_F_ACK and a fresh sequence, hands every reply message to
    /// <paramref name="onReply"/> and returns at the kernel's acknowledgement.
    /// </summary>
    /// <exception cref="KernelException">The kernel answered with an error (its errno).</exception>
    public void Request(Span<byte> message, NetlinkMessageHandler? onReply, CancellationToken cancellationToken)
    {
        var sequence = Prepare(message, NetlinkConstants.FlagRequest | NetlinkConstants.FlagAck);
        Send(message);
        while (true)
        {
            var status = Receive(out var messages, cancellationToken);
            if (status == NetlinkReceiveStatus.Overrun)
            {
                throw new KernelException("netlink request", NetlinkInterop.ENOBUFS);
            }

            foreach (var reply in messages)
            {
                if (!Answers(reply, sequence))
                {
                    continue;
                }

                if (reply.IsError)
                {
                    if (reply.ErrorNumber != 0)
                    {
                        throw new KernelException($"netlink request (type {ReadType(message)})", reply.ErrorNumber);
                    }

                    return;
                }

                onReply?.Invoke(reply);
            }
        }
    }

    /// <summary>
    /// Sends <paramref name="message"/> with NLM_F_REQUEST | NLM_F_DUMP and a fresh sequence and hands
    /// every message of the dump to <paramref name="onMessage"/> until NLMSG_DONE.
    /// </summary>
    /// <exception cref="KernelException">The kernel answered with an error, or the socket overran.</exception>
    /// <exception cref="InvalidDataException">A datagram was larger than the buffer or malformed: the dump is incomplete.</exception>
    public NetlinkDumpResult Dump(Span<byte> message, NetlinkMessageHandler onMessage, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(onMessage);
        var sequence = Prepare(message, NetlinkConstants.FlagRequest | NetlinkConstants.FlagDump);
        Send(message);
        var count = 0;
        var interrupted = false;
        while (true)
        {
            var truncated = Truncated;
            var malformed = Malformed;
            var status = Receive(out var messages, cancellationToken);
            if (status == NetlinkReceiveStatus.Overrun)
            {
                throw new KernelException("netlink dump", NetlinkInterop.ENOBUFS);
            }

            if (Truncated != truncated || Malformed != malformed)
            {
                throw new InvalidDataException($"netlink dump (type {ReadType(message)}): a datagram was {(Truncated != truncated ? $"larger than the {_buffer.Length}-byte buffer" : "malformed")}; the dump is incomplete");
            }

            foreach (var reply in messages)
            {
                if (!Answers(reply, sequence))
                {
                    continue;
                }

                interrupted |= (reply.Flags & FlagDumpInterrupted) != 0;
                if (reply.IsDone)
                {
                    return new NetlinkDumpResult(count, interrupted);
                }

                if (reply.IsError)
                {
                    throw new KernelException($"netlink dump (type {ReadType(message)})", reply.ErrorNumber);
                }

                count++;
                onMessage(reply);
            }
        }
    }

    private uint Prepare(Span<byte> message, ushort flags)
    {
        if (message.Length < NetlinkConstants.HeaderSize || BinaryPrimitives.ReadUInt32LittleEndian(message) != message.Length)
        {
            throw new ArgumentException("the request must be one whole netlink message (header length = span length)", nameof(message));
        }

        var sequence = NextSequence();
        var existing = BinaryPrimitives.ReadUInt16LittleEndian(message[6..]);
        BinaryPrimitives.WriteUInt16LittleEndian(message[6..], (ushort)(existing | flags));
        BinaryPrimitives.WriteUInt32LittleEndian(message[8..], sequence);
        BinaryPrimitives.WriteUInt32LittleEndian(message[12..], PortId);
        return sequence;
    }

    private bool Answers(in NetlinkMessage reply, uint sequence)
    {
        // The kernel addresses its answers to our port (some families leave 0).
        if (reply.Sequence == sequence && (reply.PortId == PortId || reply.PortId == 0))
        {
            return true;
        }

        Interlocked.Increment(ref _unmatched);
        return false;
    }

    private static ushort ReadType(ReadOnlySpan<byte> message) => BinaryPrimitives.ReadUInt16LittleEndian(message[4..]);
}
