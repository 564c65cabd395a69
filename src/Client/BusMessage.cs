using System.Text;
using DaemonEye.Protocol.V1;
using DaemonEye.Protocol.Wire;

namespace DaemonEye.Client;

/// <summary>
/// One delivered message. Owns a copy of the encoded Publish exactly as the publisher sent it;
/// the payload is a slice of that copy and the correlation metadata is decoded on first use.
/// Immutable and shared by every local subscription the delivery was for.
/// </summary>
public sealed class BusMessage
{
    private readonly byte[] _publish;
    private readonly PublishLayout _layout;
    private CorrelationMetadata? _correlation;
    private string? _contentType;

    internal BusMessage(string topic, ulong sequence, byte[] publish, in PublishLayout layout)
    {
        Topic = topic;
        Sequence = sequence;
        _publish = publish;
        _layout = layout;
    }

    /// <summary>The concrete topic the message was published on.</summary>
    public string Topic { get; }

    /// <summary>The broker's per-topic sequence (1, 2, 3, ... for the agent process's lifetime).</summary>
    public ulong Sequence { get; }

    /// <summary>The payload bytes.</summary>
    public ReadOnlyMemory<byte> Payload => _publish.AsMemory(_layout.Payload);

    /// <summary>The publisher's wall clock at creation, nanoseconds since the Unix epoch (0 when unset).</summary>
    public ulong TimestampUnixNanos => _layout.TimestampUnixNanos;

    /// <summary>The publisher's wall clock at creation.</summary>
    public DateTimeOffset Timestamp => DateTimeOffset.UnixEpoch.AddTicks((long)(_layout.TimestampUnixNanos / 100));

    /// <summary>Media type of the payload; empty when the publisher gave none.</summary>
    public string ContentType => _contentType ??= Encoding.UTF8.GetString(_publish.AsSpan(_layout.ContentType));

    /// <summary>Correlation metadata, decoded on first use (never null; empty when absent).</summary>
    public CorrelationMetadata Correlation => _correlation ??= CorrelationMetadata.Parser.ParseFrom(_publish.AsSpan(_layout.Correlation));

    /// <summary>Shorthand for <c>Correlation.CorrelationId</c>.</summary>
    public string CorrelationId => Correlation.CorrelationId;

    /// <summary>The Publish message exactly as the publisher encoded it, for forwarding or auditing.</summary>
    public ReadOnlyMemory<byte> EncodedPublish => _publish;

    /// <summary>This message as a <see cref="BusDelivery"/>, for a handler (a subscription's handler after the reader had to wait).</summary>
    internal BusDelivery AsDelivery() => new(Topic, Sequence, _publish, _layout);

    /// <summary>Decodes the whole Publish with the generated parser.</summary>
    public Publish ToPublish() => Publish.Parser.ParseFrom(_publish);
}
