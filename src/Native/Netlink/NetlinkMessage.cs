using System.Buffers.Binary;

namespace DaemonEye.Native.Netlink;

/// <summary>Message types and flags of the netlink header (linux/netlink.h).</summary>
public static class NetlinkConstants
{
    /// <summary>Size of <c>struct nlmsghdr</c>.</summary>
    public const int HeaderSize = 16;

    public const ushort NoOp = 1;
    public const ushort Error = 2;
    public const ushort Done = 3;
    public const ushort Overrun = 4;

    public const ushort FlagRequest = 0x1;
    public const ushort FlagMulti = 0x2;
    public const ushort FlagAck = 0x4;
    public const ushort FlagRoot = 0x100;
    public const ushort FlagMatch = 0x200;
    public const ushort FlagDump = FlagRoot | FlagMatch;

    /// <summary>Messages and attributes are aligned to 4 bytes.</summary>
    public static int Align(int length) => (length + 3) & ~3;
}

/// <summary>
/// One netlink message of a received datagram: its header fields and its payload, a view of the
/// socket's receive buffer valid until the next receive.
/// </summary>
public readonly ref struct NetlinkMessage
{
    public NetlinkMessage(ReadOnlySpan<byte> message)
    {
        Length = BinaryPrimitives.ReadUInt32LittleEndian(message);
        Type = BinaryPrimitives.ReadUInt16LittleEndian(message[4..]);
        Flags = BinaryPrimitives.ReadUInt16LittleEndian(message[6..]);
        Sequence = BinaryPrimitives.ReadUInt32LittleEndian(message[8..]);
        PortId = BinaryPrimitives.ReadUInt32LittleEndian(message[12..]);
        Payload = message[NetlinkConstants.HeaderSize..(int)Length];
    }

    public uint Length { get; }

    public ushort Type { get; }

    public ushort Flags { get; }

    public uint Sequence { get; }

    /// <summary>The sender's port: 0 for the kernel.</summary>
    public uint PortId { get; }

    public ReadOnlySpan<byte> Payload { get; }

    public bool IsError => Type == NetlinkConstants.Error;

    public bool IsDone => Type == NetlinkConstants.Done;

    /// <summary>For an NLMSG_ERROR message: the (positive) errno it carries, 0 for an acknowledgement.</summary>
    public int ErrorNumber => Payload.Length >= 4 ? -BinaryPrimitives.ReadInt32LittleEndian(Payload) : 0;
}

/// <summary>
/// The messages of one datagram, in order. A header whose length is shorter than a header or
/// longer than what is left ends the walk and sets <see cref="Enumerator.Malformed"/>; the socket
/// counts it.
/// </summary>
public readonly ref struct NetlinkMessages(ReadOnlySpan<byte> datagram)
{
    private readonly ReadOnlySpan<byte> _datagram = datagram;

    public int Bytes => _datagram.Length;

    public Enumerator GetEnumerator() => new(_datagram);

    /// <summary>True when every header in the datagram is well formed.</summary>
    public bool IsWellFormed
    {
        get
        {
            var e = GetEnumerator();
            while (e.MoveNext())
            {
            }

            return !e.Malformed;
        }
    }

    public ref struct Enumerator(ReadOnlySpan<byte> datagram)
    {
        private ReadOnlySpan<byte> _rest = datagram;
        private ReadOnlySpan<byte> _current;

        public readonly NetlinkMessage Current => new(_current);

        /// <summary>The walk stopped at a header that does not fit the datagram.</summary>
        public bool Malformed { get; private set; }

        public bool MoveNext()
        {
            if (_rest.Length < NetlinkConstants.HeaderSize)
            {
                Malformed |= !_rest.IsEmpty;
                _rest = default;
                return false;
            }

            var length = BinaryPrimitives.ReadUInt32LittleEndian(_rest);
            if (length < NetlinkConstants.HeaderSize || length > (uint)_rest.Length)
            {
                Malformed = true;
                _rest = default;
                return false;
            }

            _current = _rest[..(int)length];
            var next = Math.Min(_rest.Length, NetlinkConstants.Align((int)length));
            _rest = _rest[next..];
            return true;
        }
    }
}

/// <summary>
/// Builds one request: a netlink header, a fixed payload, then attributes (<c>struct nlattr</c>).
/// The header's length is kept up to date, so <see cref="Written"/> is always a whole message.
/// </summary>
public ref struct NetlinkMessageWriter
{
    private readonly Span<byte> _buffer;
    private int _length;

    public NetlinkMessageWriter(Span<byte> buffer, ushort type, ushort flags)
    {
        if (buffer.Length < NetlinkConstants.HeaderSize)
        {
            throw new ArgumentException($"a netlink message needs at least {NetlinkConstants.HeaderSize} bytes", nameof(buffer));
        }

        _buffer = buffer;
        buffer[..NetlinkConstants.HeaderSize].Clear();
        BinaryPrimitives.WriteUInt16LittleEndian(buffer[4..], type);
        BinaryPrimitives.WriteUInt16LittleEndian(buffer[6..], flags);
        _length = NetlinkConstants.HeaderSize;
        SetLength();
    }

    public readonly Span<byte> Written => _buffer[.._length];

    /// <summary>Appends <paramref name="size"/> zeroed bytes (aligned) and returns them to fill in.</summary>
    public Span<byte> Append(int size)
    {
        var aligned = NetlinkConstants.Align(size);
        if (_length + aligned > _buffer.Length)
        {
            throw new ArgumentException($"the request needs more than the {_buffer.Length} bytes given");
        }

        var span = _buffer.Slice(_length, aligned);
        span.Clear();
        _length += aligned;
        SetLength();
        return span[..size];
    }

    public void Append(ReadOnlySpan<byte> bytes) => bytes.CopyTo(Append(bytes.Length));

    /// <summary>Appends an attribute (type, value) with its 4-byte header.</summary>
    public void AppendAttribute(ushort type, ReadOnlySpan<byte> value)
    {
        var span = Append(4 + value.Length);
        BinaryPrimitives.WriteUInt16LittleEndian(span, (ushort)(4 + value.Length));
        BinaryPrimitives.WriteUInt16LittleEndian(span[2..], type);
        value.CopyTo(span[4..]);
    }

    /// <summary>Sets the sequence number (the socket's request methods do this).</summary>
    public readonly void SetSequence(uint sequence) => BinaryPrimitives.WriteUInt32LittleEndian(_buffer[8..], sequence);

    private readonly void SetLength() => BinaryPrimitives.WriteUInt32LittleEndian(_buffer, (uint)_length);
}

/// <summary>Walks the <c>struct nlattr</c> attributes of a payload; stops at one that does not fit.</summary>
public ref struct NetlinkAttributes(ReadOnlySpan<byte> attributes)
{
    private ReadOnlySpan<byte> _rest = attributes;

    public ushort Type { get; private set; }

    public ReadOnlySpan<byte> Value { get; private set; }

    public bool Malformed { get; private set; }

    public bool MoveNext()
    {
        if (_rest.Length < 4)
        {
            Malformed |= !_rest.IsEmpty;
            return false;
        }

        var length = BinaryPrimitives.ReadUInt16LittleEndian(_rest);
        if (length < 4 || length > _rest.Length)
        {
            Malformed = true;
            return false;
        }

        // The top two bits are NLA_F_NESTED and NLA_F_NET_BYTEORDER.
        Type = (ushort)(BinaryPrimitives.ReadUInt16LittleEndian(_rest[2..]) & 0x3FFF);
        Value = _rest[4..length];
        _rest = _rest[Math.Min(_rest.Length, NetlinkConstants.Align(length))..];
        return true;
    }
}
