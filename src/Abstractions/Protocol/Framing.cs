using System.Buffers;
using System.Buffers.Binary;
using Google.Protobuf;

namespace DaemonEye.Protocol;

/// <summary>
/// Length-prefixed framing shared by the agent and every client: a 4-byte big-endian unsigned
/// length, then exactly that many bytes of one encoded Envelope.
/// </summary>
public static class Framing
{
    public const int HeaderSize = 4;

    /// <summary>The default and the largest allowed maximum frame size, in bytes.</summary>
    public const int DefaultMaxFrameSize = 1024 * 1024;

    public const int MaxConfigurableFrameSize = 64 * 1024 * 1024;

    /// <summary>
    /// Takes one whole frame off the front of <paramref name="buffer"/>. The length prefix is
    /// checked against <paramref name="maxFrameSize"/> before anything is read or allocated.
    /// </summary>
    /// <returns><see cref="FrameStatus.Complete"/> with the envelope bytes in <paramref name="frame"/>;
    /// <see cref="FrameStatus.Incomplete"/> when more bytes are needed (buffer untouched);
    /// <see cref="FrameStatus.TooLarge"/> with the declared length in <paramref name="declaredLength"/>.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxFrameSize"/> is negative.</exception>
    public static FrameStatus TryReadFrame(ref ReadOnlySequence<byte> buffer, int maxFrameSize, out ReadOnlySequence<byte> frame, out long declaredLength)
    {
        // A negative maximum would turn into ~4 GiB in the unsigned comparison below: no limit at all.
        ArgumentOutOfRangeException.ThrowIfNegative(maxFrameSize);
        frame = default;
        declaredLength = 0;
        if (buffer.Length < HeaderSize)
        {
            return FrameStatus.Incomplete;
        }

        uint length;
        var first = buffer.FirstSpan;
        if (first.Length >= HeaderSize)
        {
            length = BinaryPrimitives.ReadUInt32BigEndian(first);
        }
        else
        {
            Span<byte> header = stackalloc byte[HeaderSize];
            buffer.Slice(0, HeaderSize).CopyTo(header);
            length = BinaryPrimitives.ReadUInt32BigEndian(header);
        }

        declaredLength = length;
        if (length > (uint)maxFrameSize)
        {
            return FrameStatus.TooLarge;
        }

        if (buffer.Length - HeaderSize < length)
        {
            return FrameStatus.Incomplete;
        }

        frame = buffer.Slice(HeaderSize, length);
        buffer = buffer.Slice(frame.End);
        return FrameStatus.Complete;
    }

    /// <summary>
    /// The same cut for a contiguous buffer (a client's receive buffer): on
    /// <see cref="FrameStatus.Complete"/> the envelope is the <paramref name="length"/> bytes after
    /// the <see cref="HeaderSize"/>-byte prefix; on <see cref="FrameStatus.TooLarge"/>,
    /// <paramref name="length"/> is 0 and <paramref name="declaredLength"/> the prefix's value.
    /// </summary>
    public static FrameStatus TryReadFrame(ReadOnlySpan<byte> buffer, int maxFrameSize, out int length, out long declaredLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxFrameSize);
        length = 0;
        declaredLength = 0;
        if (buffer.Length < HeaderSize)
        {
            return FrameStatus.Incomplete;
        }

        var declared = BinaryPrimitives.ReadUInt32BigEndian(buffer);
        declaredLength = declared;
        if (declared > (uint)maxFrameSize)
        {
            return FrameStatus.TooLarge;
        }

        if (buffer.Length - HeaderSize < declared)
        {
            return FrameStatus.Incomplete;
        }

        length = (int)declared;
        return FrameStatus.Complete;
    }

    /// <summary>Writes one frame holding <paramref name="envelope"/>.</summary>
    public static void Write(IBufferWriter<byte> writer, IMessage envelope)
    {
        var size = envelope.CalculateSize();
        var span = writer.GetSpan(HeaderSize + size);
        BinaryPrimitives.WriteUInt32BigEndian(span, (uint)size);
        envelope.WriteTo(span.Slice(HeaderSize, size));
        writer.Advance(HeaderSize + size);
    }

    /// <summary>Encodes one frame holding <paramref name="envelope"/> into a new array.</summary>
    public static byte[] ToFrame(IMessage envelope)
    {
        var size = envelope.CalculateSize();
        var bytes = new byte[HeaderSize + size];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, (uint)size);
        envelope.WriteTo(bytes.AsSpan(HeaderSize));
        return bytes;
    }
}

public enum FrameStatus
{
    Incomplete,
    Complete,
    TooLarge,
}
