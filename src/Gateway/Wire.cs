using System.Buffers;
using System.Buffers.Binary;
using System.Text.Unicode;
using DaemonEye.Protocol;

namespace DaemonEye.Gateway;

/// <summary>
/// Protobuf wire-format helpers for the two hot messages. Publish frames are checked and sliced
/// here without materialising objects, so the broker forwards each message byte for byte; Deliver
/// frames are written here around those bytes. Everything else goes through the generated parser.
/// Field numbers are those of proto/daemoneye/bus/v1/bus.proto; tests compare both paths with the
/// generated code.
/// </summary>
internal static class Wire
{
    private const int WireVarint = 0;
    private const int WireFixed64 = 1;
    private const int WireLen = 2;
    private const int WireFixed32 = 5;

    // Envelope
    private const int EnvelopeRequestId = 1;
    private const int EnvelopePublish = 2;
    private const byte EnvelopeDeliverTag = (3 << 3) | WireLen;

    // Deliver
    private const byte DeliverSubscriptionIdsTag = (1 << 3) | WireLen;
    private const byte DeliverSequenceTag = (2 << 3) | WireVarint;
    private const byte DeliverMessageTag = (3 << 3) | WireLen;

    /// <summary>
    /// Recognises an Envelope whose body is a Publish and which has no other fields but
    /// request_id, checking every field of the Publish (and of its correlation metadata) against
    /// the schema: wire types, lengths, UTF-8 of strings.
    /// </summary>
    public static ScanResult ScanPublish(ReadOnlySpan<byte> envelope, out uint requestId, out Range publish, out Range topic)
    {
        requestId = 0;
        publish = default;
        topic = default;
        var found = false;
        var pos = 0;
        while (pos < envelope.Length)
        {
            if (!TryReadTag(envelope, ref pos, out var field, out var wireType))
            {
                return ScanResult.Malformed;
            }

            if (field == EnvelopeRequestId && wireType == WireVarint)
            {
                if (!TryReadVarint(envelope, ref pos, out var v))
                {
                    return ScanResult.Malformed;
                }

                requestId = (uint)v;
            }
            else if (field == EnvelopePublish && wireType == WireLen && !found)
            {
                if (!TryReadLength(envelope, ref pos, out var len))
                {
                    return ScanResult.Malformed;
                }

                publish = new Range(pos, pos + len);
                if (!ScanPublishBody(envelope.Slice(pos, len), out var topicRange))
                {
                    return ScanResult.Malformed;
                }

                topic = new Range(pos + topicRange.Start.Value, pos + topicRange.End.Value);
                pos += len;
                found = true;
            }
            else
            {
                // Anything else (another body, a second Publish, unknown fields): not the fast
                // path; the caller falls back to the generated parser.
                return ScanResult.NotPublish;
            }
        }

        return found ? ScanResult.Publish : ScanResult.NotPublish;
    }

    private static bool ScanPublishBody(ReadOnlySpan<byte> body, out Range topic)
    {
        topic = new Range(0, 0);
        var pos = 0;
        while (pos < body.Length)
        {
            if (!TryReadTag(body, ref pos, out var field, out var wireType))
            {
                return false;
            }

            switch (field, wireType)
            {
                case (1, WireLen): // topic
                    if (!TryReadString(body, ref pos, out var start, out var len))
                    {
                        return false;
                    }

                    topic = new Range(start, start + len);
                    break;
                case (2, WireLen): // payload
                    if (!TryReadLength(body, ref pos, out len))
                    {
                        return false;
                    }

                    pos += len;
                    break;
                case (3, WireLen): // correlation
                    if (!TryReadLength(body, ref pos, out len) || !ScanCorrelation(body.Slice(pos, len)))
                    {
                        return false;
                    }

                    pos += len;
                    break;
                case (5, WireLen): // content_type
                    if (!TryReadString(body, ref pos, out _, out _))
                    {
                        return false;
                    }

                    break;
                default: // 4: timestamp (fixed64) and any unknown field
                    if (!TrySkip(body, ref pos, wireType))
                    {
                        return false;
                    }

                    break;
            }
        }

        return true;
    }

    private static bool ScanCorrelation(ReadOnlySpan<byte> body)
    {
        var pos = 0;
        while (pos < body.Length)
        {
            if (!TryReadTag(body, ref pos, out var field, out var wireType))
            {
                return false;
            }

            switch (field, wireType)
            {
                case (1 or 2 or 3 or 5, WireLen):
                    if (!TryReadString(body, ref pos, out _, out _))
                    {
                        return false;
                    }

                    break;
                case (6, WireLen): // tags map entry { 1: key, 2: value }
                    if (!TryReadLength(body, ref pos, out var len) || !ScanMapEntry(body.Slice(pos, len)))
                    {
                        return false;
                    }

                    pos += len;
                    break;
                default:
                    if (!TrySkip(body, ref pos, wireType))
                    {
                        return false;
                    }

                    break;
            }
        }

        return true;
    }

    private static bool ScanMapEntry(ReadOnlySpan<byte> body)
    {
        var pos = 0;
        while (pos < body.Length)
        {
            if (!TryReadTag(body, ref pos, out var field, out var wireType))
            {
                return false;
            }

            if (field is 1 or 2 && wireType == WireLen)
            {
                if (!TryReadString(body, ref pos, out _, out _))
                {
                    return false;
                }
            }
            else if (!TrySkip(body, ref pos, wireType))
            {
                return false;
            }
        }

        return true;
    }

    private static bool TryReadTag(ReadOnlySpan<byte> s, ref int pos, out int field, out int wireType)
    {
        field = 0;
        wireType = 0;
        if (!TryReadVarint(s, ref pos, out var tag) || tag > uint.MaxValue)
        {
            return false;
        }

        field = (int)(tag >> 3);
        wireType = (int)(tag & 7);
        return field > 0;
    }

    private static bool TryReadLength(ReadOnlySpan<byte> s, ref int pos, out int length)
    {
        length = 0;
        if (!TryReadVarint(s, ref pos, out var v) || v > (ulong)(s.Length - pos))
        {
            return false;
        }

        length = (int)v;
        return true;
    }

    private static bool TryReadString(ReadOnlySpan<byte> s, ref int pos, out int start, out int length)
    {
        start = 0;
        if (!TryReadLength(s, ref pos, out length))
        {
            return false;
        }

        start = pos;
        pos += length;
        return Utf8.IsValid(s.Slice(start, length));
    }

    private static bool TrySkip(ReadOnlySpan<byte> s, ref int pos, int wireType)
    {
        switch (wireType)
        {
            case WireVarint:
                return TryReadVarint(s, ref pos, out _);
            case WireFixed64:
                if (s.Length - pos < 8)
                {
                    return false;
                }

                pos += 8;
                return true;
            case WireLen:
                if (!TryReadLength(s, ref pos, out var len))
                {
                    return false;
                }

                pos += len;
                return true;
            case WireFixed32:
                if (s.Length - pos < 4)
                {
                    return false;
                }

                pos += 4;
                return true;
            default: // groups (3, 4) are not used by this protocol; 6 and 7 do not exist
                return false;
        }
    }

    internal static bool TryReadVarint(ReadOnlySpan<byte> s, ref int pos, out ulong value)
    {
        value = 0;
        for (var shift = 0; shift < 64; shift += 7)
        {
            if (pos >= s.Length)
            {
                return false;
            }

            var b = s[pos++];
            value |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80)
            {
                return shift < 63 || b <= 1;
            }
        }

        return false;
    }

    public static int VarintSize(ulong value)
    {
        var size = 1;
        while (value >= 0x80)
        {
            value >>= 7;
            size++;
        }

        return size;
    }

    private static int WriteVarint(Span<byte> s, ulong value)
    {
        var i = 0;
        while (value >= 0x80)
        {
            s[i++] = (byte)(value | 0x80);
            value >>= 7;
        }

        s[i++] = (byte)value;
        return i;
    }

    /// <summary>
    /// Writes one frame: Envelope{ deliver = Deliver{ subscription_ids, sequence, message } } where
    /// <paramref name="publish"/> is an encoded Publish, copied verbatim. Byte-identical to what
    /// the generated encoder produces for the same values.
    /// </summary>
    public static void WriteDeliverFrame(IBufferWriter<byte> writer, ReadOnlySpan<uint> subscriptionIds, ulong sequence, ReadOnlySpan<byte> publish)
    {
        var idsLength = 0;
        foreach (var id in subscriptionIds)
        {
            idsLength += VarintSize(id);
        }

        var deliverLength = 0;
        if (idsLength > 0)
        {
            deliverLength += 1 + VarintSize((ulong)idsLength) + idsLength;
        }

        if (sequence != 0)
        {
            deliverLength += 1 + VarintSize(sequence);
        }

        deliverLength += 1 + VarintSize((ulong)publish.Length) + publish.Length;
        var envelopeLength = 1 + VarintSize((ulong)deliverLength) + deliverLength;

        var span = writer.GetSpan(Framing.HeaderSize + envelopeLength);
        BinaryPrimitives.WriteUInt32BigEndian(span, (uint)envelopeLength);
        var pos = Framing.HeaderSize;
        span[pos++] = EnvelopeDeliverTag;
        pos += WriteVarint(span[pos..], (ulong)deliverLength);
        if (idsLength > 0)
        {
            span[pos++] = DeliverSubscriptionIdsTag;
            pos += WriteVarint(span[pos..], (ulong)idsLength);
            foreach (var id in subscriptionIds)
            {
                pos += WriteVarint(span[pos..], id);
            }
        }

        if (sequence != 0)
        {
            span[pos++] = DeliverSequenceTag;
            pos += WriteVarint(span[pos..], sequence);
        }

        span[pos++] = DeliverMessageTag;
        pos += WriteVarint(span[pos..], (ulong)publish.Length);
        publish.CopyTo(span[pos..]);
        pos += publish.Length;
        writer.Advance(pos);
    }
}

internal enum ScanResult
{
    /// <summary>A well-formed Publish envelope; the ranges are set.</summary>
    Publish,

    /// <summary>Something other than a plain Publish envelope: use the generated parser.</summary>
    NotPublish,

    /// <summary>Not valid protobuf.</summary>
    Malformed,
}
