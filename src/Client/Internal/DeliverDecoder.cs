using System.Buffers.Binary;
using System.Text;
using static DaemonEye.Client.Internal.WireFormat;

namespace DaemonEye.Client.Internal;

internal enum DecodeStatus
{
    /// <summary>The envelope is a Deliver and was decoded.</summary>
    Deliver,
    /// <summary>Some other body: parse it with the generated Envelope parser.</summary>
    Other,
    /// <summary>Not a valid envelope.</summary>
    Malformed,
}

/// <summary>
/// The delivery hot path: reads Envelope{deliver} without building message objects. Only the
/// subscription ids, the broker sequence and the Publish's byte range are taken; the Publish is
/// then copied once into the <see cref="BusMessage"/> that owns it.
/// </summary>
internal static class DeliverDecoder
{
    private static readonly byte EnvelopeRequestId = Tag(1, WireVarint);
    private static readonly byte EnvelopeDeliver = Tag(3, WireLengthDelimited);

    public static DecodeStatus TryDecodeDeliver(ReadOnlySpan<byte> envelope, List<uint> subscriptionIds, out ulong sequence, out int publishStart, out int publishLength)
    {
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
                return DecodeStatus.Malformed;
            }

            if (tag == EnvelopeRequestId)
            {
                if (!TryReadVarint(envelope, ref pos, out _))
                {
                    return DecodeStatus.Malformed;
                }
            }
            else if (tag == EnvelopeDeliver)
            {
                if (!TryReadLength(envelope, ref pos, out var start, out var length))
                {
                    return DecodeStatus.Malformed;
                }

                // The last occurrence of a oneof member wins; a repeated Deliver is not something
                // the agent sends, so treat it as "other" and let the full parser decide.
                if (sawDeliver)
                {
                    return DecodeStatus.Other;
                }

                sawDeliver = true;
                if (!TryDecodeDeliverBody(envelope.Slice(start, length), subscriptionIds, out sequence, out publishStart, out publishLength))
                {
                    return DecodeStatus.Malformed;
                }

                publishStart += start;
            }
            else
            {
                return DecodeStatus.Other;
            }
        }

        return sawDeliver ? DecodeStatus.Deliver : DecodeStatus.Other;
    }

    private static bool TryDecodeDeliverBody(ReadOnlySpan<byte> body, List<uint> ids, out ulong sequence, out int publishStart, out int publishLength)
    {
        sequence = 0;
        publishStart = 0;
        publishLength = 0;
        var pos = 0;
        while (pos < body.Length)
        {
            if (!TryReadVarint(body, ref pos, out var tag) || tag > uint.MaxValue)
            {
                return false;
            }

            var field = (int)(tag >> 3);
            var wire = (int)(tag & 7);
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

    /// <summary>Locates the fields of an encoded Publish. False when it is malformed or has no topic.</summary>
    public static bool TryReadPublish(ReadOnlySpan<byte> publish, out PublishLayout layout)
    {
        layout = default;
        var pos = 0;
        while (pos < publish.Length)
        {
            if (!TryReadVarint(publish, ref pos, out var tag) || tag > uint.MaxValue)
            {
                return false;
            }

            var field = (int)(tag >> 3);
            var wire = (int)(tag & 7);
            int start, length;
            switch (field)
            {
                case 1 when wire == WireLengthDelimited:
                    if (!TryReadLength(publish, ref pos, out start, out length))
                    {
                        return false;
                    }

                    layout.Topic = new Range(start, start + length);
                    break;
                case 2 when wire == WireLengthDelimited:
                    if (!TryReadLength(publish, ref pos, out start, out length))
                    {
                        return false;
                    }

                    layout.Payload = new Range(start, start + length);
                    break;
                case 3 when wire == WireLengthDelimited:
                    if (!TryReadLength(publish, ref pos, out start, out length))
                    {
                        return false;
                    }

                    layout.Correlation = new Range(start, start + length);
                    break;
                case 4 when wire == WireFixed64:
                    if (pos + 8 > publish.Length)
                    {
                        return false;
                    }

                    layout.TimestampUnixNanos = BinaryPrimitives.ReadUInt64LittleEndian(publish[pos..]);
                    pos += 8;
                    break;
                case 5 when wire == WireLengthDelimited:
                    if (!TryReadLength(publish, ref pos, out start, out length))
                    {
                        return false;
                    }

                    layout.ContentType = new Range(start, start + length);
                    break;
                default:
                    if (!TrySkip(publish, ref pos, wire))
                    {
                        return false;
                    }

                    break;
            }
        }

        return true;
    }
}

/// <summary>Where the fields of one encoded Publish are (empty ranges when absent).</summary>
internal struct PublishLayout
{
    public Range Topic;
    public Range Payload;
    public Range Correlation;
    public Range ContentType;
    public ulong TimestampUnixNanos;
}

/// <summary>
/// Turns the UTF-8 topic of a delivery into a string, reusing the string of a recently seen
/// topic so that a steady stream on a few topics allocates no strings. Single-threaded (the
/// connection's reader).
/// </summary>
internal sealed class TopicStringCache
{
    private const int Size = 64;
    private readonly byte[]?[] _bytes = new byte[Size][];
    private readonly string?[] _strings = new string[Size];

    public string Get(ReadOnlySpan<byte> utf8)
    {
        var hash = 2166136261u;
        foreach (var b in utf8)
        {
            hash = (hash ^ b) * 16777619u;
        }

        var slot = (int)(hash % Size);
        if (_bytes[slot] is { } cached && utf8.SequenceEqual(cached))
        {
            return _strings[slot]!;
        }

        var s = Encoding.UTF8.GetString(utf8);
        _bytes[slot] = utf8.ToArray();
        _strings[slot] = s;
        return s;
    }
}
