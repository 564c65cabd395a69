using DaemonEye.Grains;

namespace DaemonEye.Gateway;

internal enum OutboundKind : byte
{
    /// <summary>A pre-encoded frame (Welcome, Error, Pong, acks, RPC...).</summary>
    Control,

    /// <summary>Messages routed to the connection.</summary>
    Delivery,

    /// <summary>Drops happened; write a Dropped notice.</summary>
    DropMarker,
}

/// <summary>One item of a connection's outbound queue.</summary>
internal readonly struct Outbound
{
    private Outbound(OutboundKind kind, ReadOnlyMemory<byte> frame, int bytes, PublishBatch? batch, uint[]? ids, ulong firstSequence, int count)
    {
        Kind = kind;
        Frame = frame;
        Bytes = bytes;
        Batch = batch;
        Ids = ids;
        FirstSequence = firstSequence;
        Count = count;
    }

    public OutboundKind Kind { get; }

    public ReadOnlyMemory<byte> Frame { get; }

    /// <summary>What the item counts against the connection's outbound byte budget (broker.max_outbound_bytes).</summary>
    public int Bytes { get; }

    public PublishBatch? Batch { get; }

    public uint[]? Ids { get; }

    public ulong FirstSequence { get; }

    public int Count { get; }

    public static Outbound Control(ReadOnlyMemory<byte> frame) => new(OutboundKind.Control, frame, frame.Length, null, null, 0, 0);

    public static Outbound Delivery(PublishBatch batch, uint[] ids, ulong firstSequence, int count, int bytes) =>
        new(OutboundKind.Delivery, default, bytes, batch, ids, firstSequence, count);

    public static Outbound DropMarker() => new(OutboundKind.DropMarker, default, 0, null, null, 0, 0);
}
