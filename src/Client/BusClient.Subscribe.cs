using DaemonEye.Client.Internal;
using DaemonEye.Protocol.V1;
using DaemonEye.Topics;

namespace DaemonEye.Client;

/// <summary>Subscriptions: subscribe and unsubscribe, acknowledged by the agent. Deliveries reach
/// them through the reader (<c>BusClient.Reader.cs</c>); a reconnect restores them (<c>BusClient.Connection.cs</c>).</summary>
public sealed partial class BusClient
{
    /// <summary>
    /// Subscribes to a pattern. Returns once the agent has acknowledged: every message published
    /// after that is delivered to the subscription.
    /// </summary>
    /// <exception cref="TopicFormatException">The pattern breaks the topic rules.</exception>
    /// <exception cref="BusException">The agent refused (e.g. LIMIT_EXCEEDED).</exception>
    public Task<BusSubscription> SubscribeAsync(string pattern, CancellationToken cancellationToken = default) =>
        SubscribeCoreAsync(pattern, handler: null, cancellationToken);

    /// <summary>
    /// Subscribes to a pattern with a handler that the client's reader calls for each message, on
    /// its own thread, before it reads on: no local buffer, no thread hand-off, nothing allocated
    /// per message (the <see cref="BusDelivery"/> is a view of the receive buffer, valid during the
    /// call). The handler must be short and must never block or wait (no <c>.Result</c>, no
    /// <c>.Wait()</c>): while it runs the reader reads nothing, and with inline socket completions
    /// (<see cref="CollectorRuntime.UseInlineSocketCompletions"/>) no other bus socket of the process
    /// is served either. It may publish: what it publishes leaves with the read's other frames.
    /// A handler that throws is logged and called again for the next message. Returns once the
    /// agent has acknowledged, as <see cref="SubscribeAsync(string, CancellationToken)"/> does.
    /// </summary>
    /// <exception cref="TopicFormatException">The pattern breaks the topic rules.</exception>
    /// <exception cref="BusException">The agent refused (e.g. LIMIT_EXCEEDED).</exception>
    public Task<BusSubscription> SubscribeAsync(string pattern, BusMessageHandler handler, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(handler);
        return SubscribeCoreAsync(pattern, handler, cancellationToken);
    }

    private async Task<BusSubscription> SubscribeCoreAsync(string pattern, BusMessageHandler? handler, CancellationToken cancellationToken, DurableConsumerOptions? durable = null)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        TopicRules.EnsurePattern(pattern);
        var subscription = new BusSubscription(this, pattern, _options.SubscriptionBufferSize, handler) { Durable = durable };
        while (true)
        {
            var connection = await WaitConnectedAsync(cancellationToken).ConfigureAwait(false);
            var (id, pending) = _requests.Register(connection, subscription);
            _writer.Write(new Envelope { RequestId = id, Subscribe = subscription.ToSubscribe() }, SendMode.Auto);
            try
            {
                await pending.Reply.WaitAsync(cancellationToken).ConfigureAwait(false);
                return subscription;
            }
            catch (BusConnectionException)
            {
                // The connection went away before the ack; subscribe again on the next one.
            }
            catch (OperationCanceledException)
            {
                _requests.Forget(id);
                if (pending.Reply.IsCompletedSuccessfully)
                {
                    await UnsubscribeAsync(subscription, CancellationToken.None).ConfigureAwait(false);
                }

                throw;
            }
        }
    }

    /// <summary>Ends a subscription: its reader completes, and after the agent's ack nothing more is delivered.</summary>
    public async ValueTask UnsubscribeAsync(BusSubscription subscription, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(subscription);
        if (!subscription.TryClose())
        {
            return;
        }

        _subscriptions.Remove(subscription);

        var connection = Volatile.Read(ref _connection);
        if (connection is null || subscription.Connection != connection || !connection.Subscriptions.TryRemove(subscription.Id, out _))
        {
            return;
        }

        var (id, pending) = _requests.Register(connection);
        _writer.Write(new Envelope { RequestId = id, Unsubscribe = new Unsubscribe { SubscriptionId = subscription.Id } }, SendMode.Auto);
        try
        {
            await pending.Reply.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (BusConnectionException)
        {
            // The connection is gone, and with it the agent's subscription.
        }
        catch (BusException e) when (e.Code == ErrorCode.UnknownSubscription)
        {
        }
    }
}
