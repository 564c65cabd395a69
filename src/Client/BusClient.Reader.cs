using DaemonEye.Client.Internal;
using DaemonEye.Protocol.V1;
using DaemonEye.Protocol.Wire;
using Google.Protobuf;

namespace DaemonEye.Client;

/// <summary>The reader: one loop per connection reads what the socket has, cuts it into frames and
/// handles each — deliveries to their subscriptions, replies to their requests, RPC to
/// <c>BusClient.Rpc.cs</c>. The frames of one read are handled inside the writer's cork, so the
/// answers they produce leave together.</summary>
public sealed partial class BusClient
{
    // The reader's own state (one reader runs at a time).
    private readonly List<uint> _deliverIds = [];
    private readonly TopicStringCache _topics = new();

    private async Task ReadLoopAsync(Connection connection)
    {
        var token = connection.Token;
        var reader = connection.Reader;
        try
        {
            while (true)
            {
                BlockedDelivery blocked;
                do
                {
                    blocked = default;
                    // The frames of this read, up to one whose delivery must wait: what they produce leaves in one send when the cork closes.
                    using (_writer.Cork())
                    {
                        while (blocked.Message is null && reader.TryTake(out var offset, out var length))
                        {
                            blocked = ProcessFrame(connection, reader.Buffer.AsSpan(offset, length));
                        }
                    }

                    if (blocked.Message is not null)
                    {
                        await DeliverBlockedAsync(connection, blocked, token).ConfigureAwait(false);
                    }
                }
                while (blocked.Message is not null);

                if (!await reader.FillAsync(connection.Io, token).ConfigureAwait(false))
                {
                    var reason = reader.HasPartialFrame
                        ? new BusConnectionException($"the agent at {SocketPath} closed the connection in the middle of a frame")
                        : new BusConnectionException($"the agent at {SocketPath} closed the connection");
                    connection.Close(reason);
                    return;
                }
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            connection.Close(new BusConnectionException($"reading from the agent at {SocketPath} failed: {e.Message}", e));
        }
    }

    private readonly record struct BlockedDelivery(BusMessage? Message, uint[]? Remaining);

    private async ValueTask DeliverBlockedAsync(Connection connection, BlockedDelivery blocked, CancellationToken token)
    {
        foreach (var id in blocked.Remaining!)
        {
            if (!connection.Subscriptions.TryGetValue(id, out var subscription) || subscription.IsClosed)
            {
                continue;
            }

            if (subscription.Handler is { } handler)
            {
                Handle(subscription, handler, blocked.Message!.AsDelivery());
                continue;
            }

            if (connection.Ending)
            {
                Offer(connection, subscription, blocked.Message!);
                continue;
            }

            // Waiting here stops the socket reader: the agent's buffer and drop accounting take over.
            // The reactor still reports the agent's hang-up, which ends the wait: the connection is over.
            var stalled = false;
            while (!subscription.TryWrite(blocked.Message!))
            {
                if (!stalled)
                {
                    stalled = true;
                    Raise(SlowConsumer, new BusSlowConsumerEventArgs(subscription.Pattern, subscription.Id, subscription.Capacity, subscription.CountStall()));
                }

                var space = subscription.WaitToWriteAsync(token).AsTask();
                if (!space.IsCompleted && await Task.WhenAny(space, connection.Io.HangUp).ConfigureAwait(false) != space)
                {
                    connection.Ending = true;
                    Abandon(connection, subscription);
                    break;
                }

                if (!await space.ConfigureAwait(false))
                {
                    break; // unsubscribed meanwhile
                }
            }
        }
    }

    /// <summary>Once the connection is ending: buffers the message if there is room, else abandons it and the subscription's later ones.</summary>
    private void Offer(Connection connection, BusSubscription subscription, BusMessage message)
    {
        if (connection.Abandoning.Contains(subscription) || !subscription.TryWrite(message))
        {
            Abandon(connection, subscription);
        }
    }

    private void Abandon(Connection connection, BusSubscription subscription)
    {
        if (subscription.IsClosed)
        {
            return;
        }

        connection.Abandoning.Add(subscription);
        connection.Abandoned++;
        subscription.CountAbandoned();
        Interlocked.Increment(ref _abandonedTotal);
    }

    /// <summary>
    /// Handles one frame. A delivery goes to each of its subscriptions: a handler is called with a
    /// view of the receive buffer; buffered subscriptions share one <see cref="BusMessage"/>, the copy
    /// they keep. When one of those is full, the rest wait (<see cref="BlockedDelivery"/>).
    /// </summary>
    private BlockedDelivery ProcessFrame(Connection connection, ReadOnlySpan<byte> frame)
    {
        var status = DeliverFrame.TryDecode(frame, _deliverIds, out var sequence, out var publishStart, out var publishLength);
        if (status == DeliverDecode.Deliver)
        {
            var publish = frame.Slice(publishStart, publishLength);
            if (!PublishFrame.TryReadLayout(publish, out var layout))
            {
                throw new InvalidDataException("the agent delivered a malformed Publish");
            }

            var topic = _topics.Get(publish[layout.Topic]);
            BusMessage? message = null;
            for (var i = 0; i < _deliverIds.Count; i++)
            {
                if (!connection.Subscriptions.TryGetValue(_deliverIds[i], out var subscription) || subscription.IsClosed)
                {
                    continue;
                }

                if (subscription.Handler is { } handler)
                {
                    Handle(subscription, handler, new BusDelivery(topic, sequence, publish, layout));
                    continue;
                }

                message ??= new BusMessage(topic, sequence, publish.ToArray(), layout);
                if (connection.Ending)
                {
                    Offer(connection, subscription, message);
                }
                else if (!subscription.TryWrite(message) && !subscription.IsClosed)
                {
                    return new BlockedDelivery(message, [.. _deliverIds.Skip(i)]);
                }
            }

            return default;
        }

        Envelope envelope;
        try
        {
            envelope = Envelope.Parser.ParseFrom(frame);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new InvalidDataException($"the agent sent a malformed frame: {e.Message}", e);
        }

        HandleControl(connection, envelope);
        return default;
    }

    private void Handle(BusSubscription subscription, BusMessageHandler handler, in BusDelivery delivery)
    {
        try
        {
            handler(delivery);
        }
        catch (Exception e)
        {
            Log.SubscriptionHandlerFailed(_logger, subscription.Pattern, e);
        }
    }

    private void HandleControl(Connection connection, Envelope envelope)
    {
        switch (envelope.BodyCase)
        {
            case Envelope.BodyOneofCase.SubscribeAck:
            {
                var ack = envelope.SubscribeAck;
                if (_requests.TryTake(envelope.RequestId, out var pending) && pending.Subscription is { } subscription && !subscription.IsClosed)
                {
                    // Bind before completing: deliveries for the new id may be next on this reader.
                    connection.Subscriptions[ack.SubscriptionId] = subscription;
                    subscription.Bind(connection, ack.SubscriptionId, ack.MaxInFlight);
                    _subscriptions.Add(subscription);

                    pending.Complete(envelope);
                }
                else
                {
                    // Nobody waits for it any more (cancelled, or a stale frame from before a reconnect).
                    pending?.Complete(envelope);
                    _writer.Write(new Envelope { Unsubscribe = new Unsubscribe { SubscriptionId = ack.SubscriptionId } }, SendMode.Auto);
                }

                break;
            }

            case Envelope.BodyOneofCase.UnsubscribeAck:
            case Envelope.BodyOneofCase.Pong:
            case Envelope.BodyOneofCase.StreamsReply:
                if (_requests.TryTake(envelope.RequestId, out var reply))
                {
                    reply.Complete(envelope);
                }

                break;
            case Envelope.BodyOneofCase.Error:
            {
                var error = envelope.Error;
                var exception = new BusException(error.Code, $"{error.Code}: {error.Message}", error.Fatal);
                if (error.Fatal)
                {
                    connection.FatalError = exception;
                }

                if (envelope.RequestId != 0 && _requests.TryTake(envelope.RequestId, out var failed))
                {
                    failed.Fail(exception);
                }
                else
                {
                    Log.AgentError(_logger, error.Code, error.Message, error.Fatal);
                    Raise(ErrorReceived, new BusErrorEventArgs(error.Code, error.Message, error.Fatal, envelope.RequestId));
                }

                break;
            }

            case Envelope.BodyOneofCase.Dropped:
            {
                var dropped = envelope.Dropped;
                var total = Interlocked.Add(ref _droppedTotal, (long)dropped.Count);
                Log.MessagesDropped(_logger, dropped.Count, dropped.Total, dropped.Reason);
                Raise(Dropped, new BusDroppedEventArgs(dropped.Count, dropped.Total, total, dropped.Reason));
                break;
            }

            case Envelope.BodyOneofCase.RpcRequest:
            case Envelope.BodyOneofCase.RpcResponse:
                HandleRpc(envelope);
                break;
            case Envelope.BodyOneofCase.Ping:
                _writer.Write(new Envelope { RequestId = envelope.RequestId, Pong = new Pong { Nonce = envelope.Ping.Nonce } }, SendMode.Auto);
                break;
            default:
                Log.UnexpectedFrame(_logger, envelope.BodyCase.ToString());
                break;
        }
    }
}
