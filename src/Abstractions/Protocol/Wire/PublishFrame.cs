using System.Buffers.Binary;
using System.Text;
using static DaemonEye.Protocol.Wire.ProtoWire;

namespace DaemonEye.Protocol.Wire;

/// <summary>The fields of one Publish frame, as the encoder needs them (no allocation).</summary>
public readonly ref struct PublishFields
{
    public required ReadOnlySpan<byte> Topic { get; init; }
    public ReadOnlySpan<byte> Payload { get; init; }
    /// <summary>UTF-8 correlation id; empty means absent.</summary>
    public ReadOnlySpan<byte> CorrelationId { get; init; }
    public string? ParentCorrelationId { get; init; }
    /// <summary>Explicit root; ignored when <see cref="RootIsCorrelationId"/>.</summary>
    public string? RootCorrelationId { get; init; }
    public bool RootIsCorrelationId { get; init; }
    public ulong SequenceNumber { get; init; }
    public string? WorkflowStage { get; init; }
    public IReadOnlyDictionary<string, string>? Tags { get; init; }
    public ulong TimestampUnixNanos { get; init; }
    public string? ContentType { get; init; }
    public uint RequestId { get; init; }
}

/// <summary>
/// Envelope{publish} frames, the bus's hot message, without building message objects. The encoder
/// (<see cref="FrameSize"/>, <see cref="Write"/>: the SDK's publish path) writes the same field
/// order and encoding as the generated code; <see cref="Scan"/> (the agent's read path) checks an
/// envelope against the schema and slices it; <see cref="TryReadLayout"/> (the SDK's receive path)
/// locates the fields of a Publish a trusted peer sent. Field numbers are those of
/// proto/daemoneye/bus/v1/bus.proto; tests compare every path with the generated code.
/// </summary>
public static partial class PublishFrame
{
    private static readonly Encoding Utf8 = Encoding.UTF8;

    private static int StringSize(string? value) =>
        string.IsNullOrEmpty(value) ? 0 : LengthDelimitedSize(Utf8.GetByteCount(value));

    private static int CorrelationSize(in PublishFields f)
    {
        var size = 0;
        if (!f.CorrelationId.IsEmpty)
        {
            size += LengthDelimitedSize(f.CorrelationId.Length);
        }

        size += StringSize(f.ParentCorrelationId);
        if (f.RootIsCorrelationId)
        {
            size += f.CorrelationId.IsEmpty ? 0 : LengthDelimitedSize(f.CorrelationId.Length);
        }
        else
        {
            size += StringSize(f.RootCorrelationId);
        }

        if (f.SequenceNumber != 0)
        {
            size += 1 + VarintSize(f.SequenceNumber);
        }

        size += StringSize(f.WorkflowStage);
        if (f.Tags is { Count: > 0 } tags)
        {
            foreach (var (key, value) in tags)
            {
                var entry = MapEntrySize(key, value);
                size += 1 + VarintSize((uint)entry) + entry;
            }
        }

        return size;
    }

    // Map entries always carry key and value, as the generated codec writes them.
    private static int MapEntrySize(string key, string value) =>
        LengthDelimitedSize(Utf8.GetByteCount(key)) + LengthDelimitedSize(Utf8.GetByteCount(value));

    private static int PublishSize(in PublishFields f, int correlationSize)
    {
        var size = LengthDelimitedSize(f.Topic.Length);
        if (!f.Payload.IsEmpty)
        {
            size += LengthDelimitedSize(f.Payload.Length);
        }

        if (correlationSize > 0)
        {
            size += LengthDelimitedSize(correlationSize);
        }

        if (f.TimestampUnixNanos != 0)
        {
            size += 9;
        }

        size += StringSize(f.ContentType);
        return size;
    }

    /// <summary>The whole frame's size: length prefix plus envelope.</summary>
    public static int FrameSize(in PublishFields f, out int correlationSize, out int publishSize, out int envelopeSize)
    {
        correlationSize = CorrelationSize(f);
        publishSize = PublishSize(f, correlationSize);
        envelopeSize = (f.RequestId != 0 ? 1 + VarintSize(f.RequestId) : 0) + LengthDelimitedSize(publishSize);
        return Framing.HeaderSize + envelopeSize;
    }

    /// <summary>Writes the frame into <paramref name="destination"/>; returns the bytes written.</summary>
    public static int Write(Span<byte> destination, in PublishFields f, int correlationSize, int publishSize, int envelopeSize)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, (uint)envelopeSize);
        var pos = Framing.HeaderSize;
        if (f.RequestId != 0)
        {
            destination[pos++] = Tag(1, WireVarint);
            pos += WriteVarint(destination[pos..], f.RequestId);
        }

        pos += WriteLengthDelimitedHeader(destination[pos..], Tag(2, WireLengthDelimited), publishSize);
        pos += WriteBytes(destination[pos..], Tag(1, WireLengthDelimited), f.Topic);
        if (!f.Payload.IsEmpty)
        {
            pos += WriteBytes(destination[pos..], Tag(2, WireLengthDelimited), f.Payload);
        }

        if (correlationSize > 0)
        {
            pos += WriteLengthDelimitedHeader(destination[pos..], Tag(3, WireLengthDelimited), correlationSize);
            if (!f.CorrelationId.IsEmpty)
            {
                pos += WriteBytes(destination[pos..], Tag(1, WireLengthDelimited), f.CorrelationId);
            }

            pos += WriteString(destination[pos..], Tag(2, WireLengthDelimited), f.ParentCorrelationId);
            if (f.RootIsCorrelationId)
            {
                if (!f.CorrelationId.IsEmpty)
                {
                    pos += WriteBytes(destination[pos..], Tag(3, WireLengthDelimited), f.CorrelationId);
                }
            }
            else
            {
                pos += WriteString(destination[pos..], Tag(3, WireLengthDelimited), f.RootCorrelationId);
            }

            if (f.SequenceNumber != 0)
            {
                destination[pos++] = Tag(4, WireVarint);
                pos += WriteVarint(destination[pos..], f.SequenceNumber);
            }

            pos += WriteString(destination[pos..], Tag(5, WireLengthDelimited), f.WorkflowStage);
            if (f.Tags is { Count: > 0 } tags)
            {
                foreach (var (key, value) in tags)
                {
                    pos += WriteLengthDelimitedHeader(destination[pos..], Tag(6, WireLengthDelimited), MapEntrySize(key, value));
                    pos += WriteStringAlways(destination[pos..], Tag(1, WireLengthDelimited), key);
                    pos += WriteStringAlways(destination[pos..], Tag(2, WireLengthDelimited), value);
                }
            }
        }

        if (f.TimestampUnixNanos != 0)
        {
            pos += WriteFixed64(destination[pos..], Tag(4, WireFixed64), f.TimestampUnixNanos);
        }

        pos += WriteString(destination[pos..], Tag(5, WireLengthDelimited), f.ContentType);
        return pos;
    }

    private static int WriteBytes(Span<byte> span, byte tag, ReadOnlySpan<byte> value)
    {
        var n = WriteLengthDelimitedHeader(span, tag, value.Length);
        value.CopyTo(span[n..]);
        return n + value.Length;
    }

    private static int WriteString(Span<byte> span, byte tag, string? value) =>
        string.IsNullOrEmpty(value) ? 0 : WriteStringAlways(span, tag, value);

    private static int WriteStringAlways(Span<byte> span, byte tag, string value)
    {
        var length = Utf8.GetByteCount(value);
        var n = WriteLengthDelimitedHeader(span, tag, length);
        Utf8.GetBytes(value, span[n..]);
        return n + length;
    }
}

/// <summary>What <see cref="PublishFrame.Scan"/> found.</summary>
public enum PublishScan
{
    /// <summary>A well-formed Publish envelope; the ranges are set.</summary>
    Publish,

    /// <summary>Something other than a plain Publish envelope: use the generated parser.</summary>
    NotPublish,

    /// <summary>Not valid protobuf, or a string that is not UTF-8.</summary>
    Malformed,
}

/// <summary>Where the fields of one encoded Publish are (empty ranges when absent).</summary>
public struct PublishLayout
{
    public Range Topic { get; set; }

    public Range Payload { get; set; }

    public Range Correlation { get; set; }

    public Range ContentType { get; set; }

    public ulong TimestampUnixNanos { get; set; }
}

public static partial class PublishFrame
{
    private const int EnvelopeRequestId = 1;
    private const int EnvelopePublish = 2;

    /// <summary>
    /// Recognises an Envelope whose body is a Publish and which has no other fields but
    /// request_id, checking every field of the Publish (and of its correlation metadata) against
    /// the schema: wire types, lengths, UTF-8 of strings. What it accepts, the generated parser
    /// accepts too and reads the same way.
    /// </summary>
    public static PublishScan Scan(ReadOnlySpan<byte> envelope, out uint requestId, out Range publish, out Range topic)
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
                return PublishScan.Malformed;
            }

            if (field == EnvelopeRequestId && wireType == WireVarint)
            {
                if (!TryReadVarint(envelope, ref pos, out var v))
                {
                    return PublishScan.Malformed;
                }

                requestId = (uint)v;
            }
            else if (field == EnvelopePublish && wireType == WireLengthDelimited && !found)
            {
                if (!TryReadLength(envelope, ref pos, out var start, out var len))
                {
                    return PublishScan.Malformed;
                }

                publish = new Range(start, start + len);
                if (!ScanPublishBody(envelope.Slice(start, len), out var topicRange))
                {
                    return PublishScan.Malformed;
                }

                topic = new Range(start + topicRange.Start.Value, start + topicRange.End.Value);
                found = true;
            }
            else
            {
                // Anything else (another body, a second Publish, unknown fields): not the fast
                // path; the caller falls back to the generated parser.
                return PublishScan.NotPublish;
            }
        }

        return found ? PublishScan.Publish : PublishScan.NotPublish;
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
                case (1, WireLengthDelimited): // topic
                    if (!TryReadString(body, ref pos, out var start, out var len))
                    {
                        return false;
                    }

                    topic = new Range(start, start + len);
                    break;
                case (3, WireLengthDelimited): // correlation
                    if (!TryReadLength(body, ref pos, out start, out len) || !ScanCorrelation(body.Slice(start, len)))
                    {
                        return false;
                    }

                    break;
                case (5, WireLengthDelimited): // content_type
                    if (!TryReadString(body, ref pos, out _, out _))
                    {
                        return false;
                    }

                    break;
                default: // 2: payload (bytes), 4: timestamp (fixed64), and any unknown field
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
                case (1 or 2 or 3 or 5, WireLengthDelimited):
                    if (!TryReadString(body, ref pos, out _, out _))
                    {
                        return false;
                    }

                    break;
                case (6, WireLengthDelimited): // tags map entry { 1: key, 2: value }
                    if (!TryReadLength(body, ref pos, out var start, out var len) || !ScanMapEntry(body.Slice(start, len)))
                    {
                        return false;
                    }

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

            if (field is 1 or 2 && wireType == WireLengthDelimited)
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

    private static bool TryReadString(ReadOnlySpan<byte> span, ref int pos, out int start, out int length) =>
        TryReadLength(span, ref pos, out start, out length) && System.Text.Unicode.Utf8.IsValid(span.Slice(start, length));

    /// <summary>
    /// Locates the fields of an encoded Publish from a trusted peer (the agent forwards only what
    /// <see cref="Scan"/> accepted): no UTF-8 checks. False when it is malformed.
    /// </summary>
    public static bool TryReadLayout(ReadOnlySpan<byte> publish, out PublishLayout layout)
    {
        layout = default;
        var pos = 0;
        while (pos < publish.Length)
        {
            if (!TryReadTag(publish, ref pos, out var field, out var wire))
            {
                return false;
            }

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
