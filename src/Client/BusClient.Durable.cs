using DaemonEye.Client.Internal;
using DaemonEye.Protocol.V1;

namespace DaemonEye.Client;

/// <summary>Durable subscriptions (docs/durability.md): served from the agent's durable log, resumed after the last ack.</summary>
public sealed partial class BusClient
{
    /// <summary>
    /// Subscribes consumer <paramref name="consumer"/> to <paramref name="pattern"/>'s durable topics: first every
    /// logged message after the consumer's last acknowledgement (or from <paramref name="start"/> when the consumer
    /// is new), then new ones, in log order. <see cref="BusMessage.Sequence"/> is the log sequence; acknowledge with
    /// <see cref="BusSubscription.Acknowledge(ulong)"/> (batched) and <see cref="BusSubscription.FlushAcksAsync"/>.
    /// After a reconnect the subscription resumes after the last ack the agent stored: messages not acknowledged
    /// by then are delivered again (those still unread in the buffer are discarded first, see
    /// <see cref="BusSubscription.Abandoned"/>). The agent sends at most <see cref="BusClientOptions.SubscriptionBufferSize"/>
    /// unacknowledged messages, so the buffer never fills: a consumer that reads a batch, acknowledges it and
    /// awaits <see cref="BusSubscription.FlushAcksAsync"/> before it reads on cannot stall its own reader.
    /// </summary>
    /// <exception cref="BusException">The agent refused (no durable topic matches, consumer held elsewhere...).</exception>
    public Task<BusSubscription> SubscribeDurableAsync(string pattern, string consumer, DurableStartPosition start, CancellationToken cancellationToken = default) =>
        SubscribeDurableAsync(pattern, new DurableConsumerOptions(consumer, start), cancellationToken);

    /// <inheritdoc cref="SubscribeDurableAsync(string, string, DurableStartPosition, CancellationToken)"/>
    public Task<BusSubscription> SubscribeDurableAsync(string pattern, DurableConsumerOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.AckBatchSize, 1);
        return SubscribeCoreAsync(pattern, handler: null, cancellationToken, options);
    }

    /// <summary>The agent's durable log: durable topics, size, consumers and their lag.</summary>
    public async Task<StreamsReply> GetStreamsAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var connection = await WaitConnectedAsync(cancellationToken).ConfigureAwait(false);
        var (id, pending) = _requests.Register(connection);
        _writer.Write(new Envelope { RequestId = id, StreamsRequest = new StreamsRequest() }, SendMode.Auto);
        try
        {
            return (await pending.Reply.WaitAsync(cancellationToken).ConfigureAwait(false)).StreamsReply;
        }
        catch (OperationCanceledException)
        {
            _requests.Forget(id);
            throw;
        }
    }

    internal void SendDurableAck(uint subscriptionId, ulong sequence) =>
        _writer.Write(new Envelope { DurableAck = new DurableAck { SubscriptionId = subscriptionId, Sequence = sequence } }, SendMode.Auto);
}
