using System.Buffers.Binary;

namespace DaemonEye.Protocol.Wire;

/// <summary>
/// The protobuf wire-format primitives the hot paths of both ends need (varints, tags,
/// length-delimited fields, skipping). The two hot messages (<see cref="PublishFrame"/>,
/// <see cref="DeliverFrame"/>) are encoded and decoded with these; everything else goes through
/// the generated types in <c>DaemonEye.Protocol.V1</c>.
/// </summary>
public static class ProtoWire
{
    public const int WireVarint = 0;
    public const int WireFixed64 = 1;
    public const int WireLengthDelimited = 2;
    public const int WireFixed32 = 5;

    /// <summary>The one-byte tag of a field numbered 1 to 15.</summary>
    public static byte Tag(int field, int wireType) => (byte)((field << 3) | wireType);

    public static int VarintSize(ulong value) => value switch
    {
        < 1UL << 7 => 1,
        < 1UL << 14 => 2,
        < 1UL << 21 => 3,
        < 1UL << 28 => 4,
        < 1UL << 35 => 5,
        < 1UL << 42 => 6,
        < 1UL << 49 => 7,
        < 1UL << 56 => 8,
        < 1UL << 63 => 9,
        _ => 10,
    };

    /// <summary>Size of a length-delimited field with a one-byte tag.</summary>
    public static int LengthDelimitedSize(int length) => 1 + VarintSize((uint)length) + length;

    public static int WriteVarint(Span<byte> span, ulong value)
    {
        var i = 0;
        while (value >= 0x80)
        {
            span[i++] = (byte)(value | 0x80);
            value >>= 7;
        }

        span[i++] = (byte)value;
        return i;
    }

    public static int WriteLengthDelimitedHeader(Span<byte> span, byte tag, int length)
    {
        span[0] = tag;
        return 1 + WriteVarint(span[1..], (uint)length);
    }

    public static int WriteFixed64(Span<byte> span, byte tag, ulong value)
    {
        span[0] = tag;
        BinaryPrimitives.WriteUInt64LittleEndian(span[1..], value);
        return 9;
    }

    /// <summary>Reads a varint; false when the span ends first or the value does not fit 64 bits.</summary>
    public static bool TryReadVarint(ReadOnlySpan<byte> span, ref int pos, out ulong value)
    {
        value = 0;
        for (var shift = 0; shift < 64; shift += 7)
        {
            if ((uint)pos >= (uint)span.Length)
            {
                return false;
            }

            var b = span[pos++];
            value |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80)
            {
                return shift < 63 || b <= 1;
            }
        }

        return false;
    }

    /// <summary>Reads a tag; false when malformed or the field number is 0.</summary>
    public static bool TryReadTag(ReadOnlySpan<byte> span, ref int pos, out int field, out int wireType)
    {
        field = 0;
        wireType = 0;
        if (!TryReadVarint(span, ref pos, out var tag) || tag > uint.MaxValue)
        {
            return false;
        }

        field = (int)(tag >> 3);
        wireType = (int)(tag & 7);
        return field > 0;
    }

    /// <summary>Reads a length prefix and returns the field's bytes' start; false when out of bounds.</summary>
    public static bool TryReadLength(ReadOnlySpan<byte> span, ref int pos, out int start, out int length)
    {
        start = 0;
        length = 0;
        if (!TryReadVarint(span, ref pos, out var len) || len > (ulong)(span.Length - pos))
        {
            return false;
        }

        start = pos;
        length = (int)len;
        pos += length;
        return true;
    }

    /// <summary>Skips one field of the given wire type; false when malformed (groups are not used by this protocol).</summary>
    public static bool TrySkip(ReadOnlySpan<byte> span, ref int pos, int wireType)
    {
        switch (wireType)
        {
            case WireVarint:
                return TryReadVarint(span, ref pos, out _);
            case WireFixed64:
                if (span.Length - pos < 8)
                {
                    return false;
                }

                pos += 8;
                return true;
            case WireLengthDelimited:
                return TryReadLength(span, ref pos, out _, out _);
            case WireFixed32:
                if (span.Length - pos < 4)
                {
                    return false;
                }

                pos += 4;
                return true;
            default:
                return false;
        }
    }
}
