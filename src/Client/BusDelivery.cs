using System.Text;
using DaemonEye.Protocol.V1;
using DaemonEye.Protocol.Wire;

namespace DaemonEye.Client;

/// <summary>
/// Handles one delivered message, synchronously, on the client's reader (see
/// <see cref="BusClient.SubscribeAsync(string, BusMessageHandler, CancellationToken)"/>).
/// </summary>
/// <param name="delivery">The message, valid only until the handler returns.</param>
public delegate void BusMessageHandler(in BusDelivery delivery);

/// <summary>
/// One delivered message as a view of the client's receive buffer: what a
/// <see cref="BusMessageHandler"/> gets. Nothing is copied or allocated to make it; it is valid
/// only during the handler's call. Keep a message beyond it with <see cref="ToMessage"/>.
/// </summary>
public readonly ref struct BusDelivery
{
    private readonly ReadOnlySpan<byte> _publish;
    private readonly PublishLayout _layout;

    internal BusDelivery(string topic, ulong sequence, ReadOnlySpan<byte> publish, in PublishLayout layout)
    {
        Topic = topic;
        Sequence = sequence;
        _publish = publish;
        _layout = layout;
    }

    /// <summary>The concrete topic the message was published on (the same string for every message of a recently seen topic).</summary>
    public string Topic { get; }

    /// <summary>The broker's per-topic sequence (1, 2, 3, ... for the agent process's lifetime).</summary>
    public ulong Sequence { get; }

    /// <summary>The payload bytes.</summary>
    public ReadOnlySpan<byte> Payload => _publish[_layout.Payload];

    /// <summary>The publisher's wall clock at creation, nanoseconds since the Unix epoch (0 when unset).</summary>
    public ulong TimestampUnixNanos => _layout.TimestampUnixNanos;

    /// <summary>The publisher's wall clock at creation.</summary>
    public DateTimeOffset Timestamp => DateTimeOffset.UnixEpoch.AddTicks((long)(_layout.TimestampUnixNanos / 100));

    /// <summary>The payload's media type as UTF-8 bytes; empty when the publisher gave none.</summary>
    public ReadOnlySpan<byte> ContentTypeUtf8 => _publish[_layout.ContentType];

    /// <summary>The payload's media type (decoded: allocates); empty when the publisher gave none.</summary>
    public string ContentType => Encoding.UTF8.GetString(ContentTypeUtf8);

    /// <summary>Correlation metadata, decoded on each call (allocates; never null, empty when absent).</summary>
    public CorrelationMetadata Correlation => CorrelationMetadata.Parser.ParseFrom(_publish[_layout.Correlation]);

    /// <summary>The Publish message exactly as the publisher encoded it.</summary>
    public ReadOnlySpan<byte> EncodedPublish => _publish;

    /// <summary>A copy that outlives the handler's call.</summary>
    public BusMessage ToMessage() => new(Topic, Sequence, _publish.ToArray(), _layout);
}
