using System.Buffers;
using System.Buffers.Binary;
using static DaemonEye.Protocol.Wire.ProtoWire;

namespace DaemonEye.Protocol.Wire;

/// <summary>What <see cref="DeliverFrame.TryDecode"/> found.</summary>
public enum DeliverDecode
{
    /// <summary>The envelope is a Deliver and was decoded.</summary>
    Deliver,

    /// <summary>Some other body: parse it with the generated Envelope parser.</summary>
    Other,

    /// <summary>Not a valid envelope.</summary>
    Malformed,
}

/// <summary>
/// Envelope{deliver} frames without message objects: the agent writes them around a publisher's
/// Publish bytes (<see cref="Write"/>), the SDK reads the subscription ids, the broker sequence
/// and the Publish's byte range out of them (<see cref="TryDecode"/>). Byte-identical to the
/// generated code for the same values (tests compare them).
/// </summary>
public static class DeliverFrame
{
    private static readonly byte EnvelopeRequestIdTag = Tag(1, WireVarint);
    private static readonly byte EnvelopeDeliverTag = Tag(3, WireLengthDelimited);
    private static readonly byte SubscriptionIdsTag = Tag(1, WireLengthDelimited);
    private static readonly byte SequenceTag = Tag(2, WireVarint);
    private static readonly byte MessageTag = Tag(3, WireLengthDelimited);

    /// <summary>
    /// Writes one frame: Envelope{ deliver = Deliver{ subscription_ids, sequence, message } } where
    /// <paramref name="publish"/> is an encoded Publish, copied verbatim.
    /// </summary>
    public static void Write(IBufferWriter<byte> writer, ReadOnlySpan<uint> subscriptionIds, ulong sequence, ReadOnlySpan<byte> publish)
    {
        ArgumentNullException.ThrowIfNull(writer);
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
            span[pos++] = SubscriptionIdsTag;
            pos += WriteVarint(span[pos..], (ulong)idsLength);
            foreach (var id in subscriptionIds)
            {
                pos += WriteVarint(span[pos..], id);
            }
        }

        if (sequence != 0)
        {
            span[pos++] = SequenceTag;
            pos += WriteVarint(span[pos..], sequence);
        }

        span[pos++] = MessageTag;
        pos += WriteVarint(span[pos..], (ulong)publish.Length);
        publish.CopyTo(span[pos..]);
        pos += publish.Length;
        writer.Advance(pos);
    }

    /// <summary>
    /// Reads an envelope that should be a Deliver: its subscription ids (added to
    /// <paramref name="subscriptionIds"/>, which is cleared first), sequence and the range of its
    /// Publish. Nothing is allocated.
    /// </summary>
    public static DeliverDecode TryDecode(ReadOnlySpan<byte> envelope, List<uint> subscriptionIds, out ulong sequence, out int publishStart, out int publishLength)
    {
        ArgumentNullException.ThrowIfNull(subscriptionIds);
        subscriptionIds.Clear();
        sequence = 0;
        publishStart = 0;
        publishLength = 0;
        var pos = 0;
        var sawDeliver = false;
        while (pos < envelope.Length)
        {
            if (!TryReadVarint(envelope, ref pos, out var tag) || tag > uint.MaxValue)
            {
                return DeliverDecode.Malformed;
            }

            if (tag == EnvelopeRequestIdTag)
            {
                if (!TryReadVarint(envelope, ref pos, out _))
                {
                    return DeliverDecode.Malformed;
                }
            }
            else if (tag == EnvelopeDeliverTag)
            {
                if (!TryReadLength(envelope, ref pos, out var start, out var length))
                {
                    return DeliverDecode.Malformed;
                }

                // The last occurrence of a oneof member wins; a repeated Deliver is not something
                // the agent sends, so treat it as "other" and let the full parser decide.
                if (sawDeliver)
                {
                    return DeliverDecode.Other;
                }

                sawDeliver = true;
                if (!TryDecodeBody(envelope.Slice(start, length), subscriptionIds, out sequence, out publishStart, out publishLength))
                {
                    return DeliverDecode.Malformed;
                }

                publishStart += start;
            }
            else
            {
                return DeliverDecode.Other;
            }
        }

        return sawDeliver ? DeliverDecode.Deliver : DeliverDecode.Other;
    }

    private static bool TryDecodeBody(ReadOnlySpan<byte> body, List<uint> ids, out ulong sequence, out int publishStart, out int publishLength)
    {
        sequence = 0;
        publishStart = 0;
        publishLength = 0;
        var pos = 0;
        while (pos < body.Length)
        {
            if (!TryReadTag(body, ref pos, out var field, out var wire))
            {
                return false;
            }

            switch (field)
            {
                case 1 when wire == WireLengthDelimited: // packed subscription ids
                    if (!TryReadLength(body, ref pos, out var start, out var length))
                    {
                        return false;
                    }

                    var packed = body.Slice(start, length);
                    var p = 0;
                    while (p < packed.Length)
                    {
                        if (!TryReadVarint(packed, ref p, out var id))
                        {
                            return false;
                        }

                        ids.Add((uint)id);
                    }

                    break;
                case 1 when wire == WireVarint:
                    if (!TryReadVarint(body, ref pos, out var single))
                    {
                        return false;
                    }

                    ids.Add((uint)single);
                    break;
                case 2 when wire == WireVarint:
                    if (!TryReadVarint(body, ref pos, out sequence))
                    {
                        return false;
                    }

                    break;
                case 3 when wire == WireLengthDelimited:
                    if (!TryReadLength(body, ref pos, out publishStart, out publishLength))
                    {
                        return false;
                    }

                    break;
                default:
                    if (!TrySkip(body, ref pos, wire))
                    {
                        return false;
                    }

                    break;
            }
        }

        return true;
    }
}
