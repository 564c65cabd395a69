using System.Buffers;
using DaemonEye.Protocol.Wire;

namespace DaemonEye.Gateway.Durability;

/// <summary>
/// One durable subscription on one bus connection, served by a <see cref="DurablePump"/>: each read's
/// matching messages become Deliver frames (log sequence in <c>Deliver.sequence</c>) handed to the
/// connection in one <c>send</c>, never more than <c>maxAckPending</c> messages (min(Subscribe.max_in_flight,
/// durability.max_ack_pending)) and half of broker.max_outbound_bytes ahead of the client's cumulative acks.
/// </summary>
internal sealed class DurableSubscription(DurableLog log, string consumer, string pattern, uint subscriptionId, ulong acked, int maxAckPending, long maxUnackedBytes, Action<byte[], int> send, Action<Exception> failed)
    : DurablePump(log, pattern, acked, maxAckPending, maxUnackedBytes)
{
    private readonly ArrayBufferWriter<byte> _frames = new(64 * 1024);
    private readonly uint[] _ids = [subscriptionId];

    public string Consumer { get; } = consumer;

    public uint SubscriptionId => _ids[0];

    /// <summary>A cumulative ack (the connection has stored it): frees credit for everything delivered up to <paramref name="sequence"/>.</summary>
    public void Acknowledge(ulong sequence) => ReleaseThrough(sequence);

    protected override int Stage(LoggedMessage row)
    {
        var before = _frames.WrittenCount;
        DeliverFrame.Write(_frames, _ids, row.Sequence, row.Publish.Span);
        return _frames.WrittenCount - before;
    }

    protected override ValueTask FlushAsync(int count, CancellationToken stop)
    {
        send(_frames.WrittenSpan.ToArray(), count);
        _frames.ResetWrittenCount();
        return ValueTask.CompletedTask;
    }

    protected override void Failed(Exception exception) => failed(exception);
}
