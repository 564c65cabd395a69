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
    public async Task<BusSubscription> SubscribeAsync(string pattern, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        TopicRules.EnsurePattern(pattern);
        var subscription = new BusSubscription(this, pattern, _options.SubscriptionBufferSize);
        while (true)
        {
            var connection = await WaitConnectedAsync(cancellationToken).ConfigureAwait(false);
            var (id, pending) = _requests.Register(connection, subscription);
            _writer.Write(new Envelope { RequestId = id, Subscribe = new Subscribe { Pattern = pattern } }, SendMode.Queue);
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
        _writer.Write(new Envelope { RequestId = id, Unsubscribe = new Unsubscribe { SubscriptionId = subscription.Id } }, SendMode.Queue);
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
