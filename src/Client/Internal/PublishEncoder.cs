using System.Buffers.Binary;
using System.Text;
using DaemonEye.Protocol;
using static DaemonEye.Client.Internal.WireFormat;

namespace DaemonEye.Client.Internal;

/// <summary>The fields of one Publish frame, as the encoder needs them (no allocation).</summary>
internal readonly ref struct PublishFields
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
/// Writes Envelope{publish} frames straight into a buffer, in the same field order and encoding
/// the generated code uses, without building message objects (the publish hot path).
/// </summary>
internal static class PublishEncoder
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
