using DaemonEye.Grains;

namespace DaemonEye.Gateway;

internal enum OutboundKind : byte
{
    /// <summary>A pre-encoded frame (Welcome, Error, Pong...).</summary>
    Control,

    /// <summary>A SubscribeAck: from here on, deliveries for the subscription are written.</summary>
    Activate,

    /// <summary>An UnsubscribeAck: from here on, deliveries for the subscription are skipped.</summary>
    Deactivate,

    /// <summary>Messages routed to the connection.</summary>
    Delivery,

    /// <summary>Drops happened; write a Dropped notice.</summary>
    DropMarker,
}

/// <summary>One item of a connection's outbound queue.</summary>
internal readonly struct Outbound
{
    private Outbound(OutboundKind kind, ReadOnlyMemory<byte> frame, uint subscriptionId, PublishBatch? batch, uint[]? ids, ulong firstSequence, int count)
    {
        Kind = kind;
        Frame = frame;
        SubscriptionId = subscriptionId;
        Batch = batch;
        Ids = ids;
        FirstSequence = firstSequence;
        Count = count;
    }

    public OutboundKind Kind { get; }

    public ReadOnlyMemory<byte> Frame { get; }

    public uint SubscriptionId { get; }

    public PublishBatch? Batch { get; }

    public uint[]? Ids { get; }

    public ulong FirstSequence { get; }

    public int Count { get; }

    public static Outbound Control(ReadOnlyMemory<byte> frame) => new(OutboundKind.Control, frame, 0, null, null, 0, 0);

    public static Outbound Activate(uint id, byte[] ack) => new(OutboundKind.Activate, ack, id, null, null, 0, 0);

    public static Outbound Deactivate(uint id, byte[] ack) => new(OutboundKind.Deactivate, ack, id, null, null, 0, 0);

    public static Outbound Delivery(PublishBatch batch, uint[] ids, ulong firstSequence, int count) =>
        new(OutboundKind.Delivery, default, 0, batch, ids, firstSequence, count);

    public static Outbound DropMarker() => new(OutboundKind.DropMarker, default, 0, null, null, 0, 0);
}
