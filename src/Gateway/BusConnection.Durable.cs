using DaemonEye.Gateway.Durability;
using DaemonEye.Gateway.Security;
using DaemonEye.Protocol;
using DaemonEye.Protocol.V1;
using Microsoft.Extensions.Logging;
using ErrorCode = DaemonEye.Protocol.V1.ErrorCode;

namespace DaemonEye.Gateway;

/// <summary>Durable subscriptions (served from the durable log), their acks, and the StreamsRequest (docs/durability.md).</summary>
internal sealed partial class BusConnection
{
    private readonly DurableLog? _durable;
    private readonly Dictionary<uint, DurableSubscription> _durableSubscriptions = [];

    private void SubscribeDurable(uint requestId, Subscribe subscribe)
    {
        var pattern = subscribe.Pattern;
        var consumer = subscribe.DurableConsumer;
        if (_durable is null)
        {
            TryEnqueueError(requestId, ErrorCode.InvalidMessage, $"durable subscribe to '{pattern}' refused: durability.enabled is false on this agent");
            return;
        }

        if (!IsConsumerName(consumer))
        {
            TryEnqueueError(requestId, ErrorCode.InvalidMessage, "durable subscribe refused: durable_consumer must be 1-128 characters of A-Z, a-z, 0-9, '_', '-', '.'");
            return;
        }

        var configured = _durable.Options.MaxAckPending;
        if (subscribe.MaxInFlight > ProtocolConstants.MaxDurableInFlight)
        {
            TryEnqueueError(requestId, ErrorCode.InvalidMessage,
                $"durable subscribe to '{pattern}' refused: max_in_flight is {subscribe.MaxInFlight}; allowed: 0 (this agent's durability.max_ack_pending, {configured}) or 1 to {ProtocolConstants.MaxDurableInFlight} (the agent sends at most {configured})");
            return;
        }

        if (!_durable.Patterns.Any(p => Overlaps(p, pattern)))
        {
            TryEnqueueError(requestId, ErrorCode.InvalidPattern, $"durable subscribe to '{pattern}' refused: no durable topic matches it; durable topics (durability.topics): {string.Join(", ", _durable.Patterns)}");
            return;
        }

        if (_subscriptions.Count >= _maxSubscriptions)
        {
            _stats.AddLimitRefusal(Limit.MaxSubscriptionsPerConnection);
            TryEnqueueError(requestId, ErrorCode.LimitExceeded, $"subscribe to '{pattern}' refused: broker.max_subscriptions_per_connection ({_maxSubscriptions}) reached on this connection");
            return;
        }

        var start = subscribe.Start switch
        {
            DurableStart.FromSequence => ConsumerStart.FromSequence,
            DurableStart.FromTime => ConsumerStart.FromTime,
            _ => ConsumerStart.NewOnly,
        };
        var startTime = DateTimeOffset.UnixEpoch.AddTicks((long)(subscribe.StartTimeUnixNanos / 100));
        var acked = _durable.Attach(consumer, pattern, start, subscribe.StartSequence, startTime, Id, out var refusal);
        if (acked is null)
        {
            TryEnqueueError(requestId, ErrorCode.Conflict, $"durable subscribe refused: {refusal}");
            return;
        }

        // The client's window when it asks for one: a client that stops reading while its buffer is full gets no more than it holds.
        var window = subscribe.MaxInFlight == 0 ? configured : (int)Math.Min(subscribe.MaxInFlight, (uint)configured);
        var id = ++_lastSubscriptionId;
        _subscriptions[id] = pattern;
        var subscription = new DurableSubscription(_durable, consumer, pattern, id, acked.Value, window, _maxOutboundBytes / 2,
            (frames, count) =>
            {
                QueueControl(frames);
                _stats.AddDelivered(count);
            },
            fault =>
            {
                LogDurableFailed(_logger, Id, consumer, fault);
                TryEnqueueError(0, ErrorCode.Internal, $"durable consumer '{consumer}' stopped: {fault.Message}; unsubscribe and subscribe again");
            });
        _durableSubscriptions[id] = subscription;
        _durable.Serve(consumer, Id, subscription);
        QueueControl(Framing.ToFrame(new Envelope { RequestId = requestId, SubscribeAck = new SubscribeAck { SubscriptionId = id, Pattern = pattern, MaxInFlight = (uint)window } }));
        LogDurableAttached(_logger, Id, _clientId, consumer, pattern, acked.Value, window);
        subscription.Start();
    }

    private void AcknowledgeDurable(uint requestId, DurableAck ack)
    {
        if (!_durableSubscriptions.TryGetValue(ack.SubscriptionId, out var subscription))
        {
            TryEnqueueError(requestId, ErrorCode.UnknownSubscription, $"durable ack for subscription {ack.SubscriptionId}, which is not a durable subscription of this connection");
            return;
        }

        try
        {
            _durable!.Ack(subscription.Consumer, ack.Sequence);
        }
        catch (DurableLogUnavailableException e)
        {
            _stats.AddLimitRefusal(Limit.DurableLogUnavailable);
            TryEnqueueError(requestId, ErrorCode.StorageUnavailable, e.Message);
            return;
        }

        subscription.Acknowledge(ack.Sequence);
    }

    /// <summary>Ends a durable subscription (unsubscribe or close): its pump has stopped when this returns.</summary>
    private async Task StopDurableAsync(uint id)
    {
        if (_durableSubscriptions.Remove(id, out var subscription))
        {
            await subscription.StopAsync();
            _durable!.Detach(subscription.Consumer, Id);
        }
    }

    private async Task StopAllDurableAsync()
    {
        foreach (var id in _durableSubscriptions.Keys.ToList())
        {
            await StopDurableAsync(id);
        }
    }

    private void ReplyStreams(uint requestId)
    {
        var reply = new StreamsReply();
        if (_durable is not null)
        {
            var stats = _durable.Stats();
            reply.Patterns.AddRange(_durable.Patterns);
            reply.FirstSequence = stats.FirstSequence;
            reply.LastSequence = stats.LastSequence;
            reply.Messages = (ulong)stats.Messages;
            reply.Bytes = (ulong)stats.Bytes;
            reply.Refused = (ulong)stats.Refused;
            reply.TornTails = (ulong)stats.TornTails;
            foreach (var c in _durable.Consumers())
            {
                reply.Consumers.Add(new ConsumerInfo
                {
                    Name = c.Name,
                    Pattern = c.Pattern,
                    AckedSequence = c.Acked,
                    Lag = c.Lag,
                    Attached = c.Attached,
                    MaxInFlight = (uint)c.MaxInFlight,
                    InFlight = (uint)c.InFlight,
                });
            }
        }

        QueueControl(Framing.ToFrame(new Envelope { RequestId = requestId, StreamsReply = reply }));
    }

    private static bool IsConsumerName(string name) =>
        name.Length is >= 1 and <= 128 && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.');

    /// <summary>True when some topic matches both patterns.</summary>
    internal static bool Overlaps(string a, string b)
    {
        var x = a.Split('.');
        var y = b.Split('.');
        for (var i = 0; ; i++)
        {
            if (i < x.Length && x[i] == "#" || i < y.Length && y[i] == "#")
            {
                return true;
            }

            if (i == x.Length || i == y.Length)
            {
                return x.Length == y.Length;
            }

            if (x[i] != "+" && y[i] != "+" && x[i] != y[i])
            {
                return false;
            }
        }
    }

    [LoggerMessage(EventId = 2020, Level = LogLevel.Information, Message = "Connection {ConnectionId} ({ClientId}) holds durable consumer {Consumer} on {Pattern}, resuming after sequence {Acked}, at most {MaxInFlight} unacknowledged")]
    private static partial void LogDurableAttached(ILogger logger, long connectionId, string clientId, string consumer, string pattern, ulong acked, int maxInFlight);

    [LoggerMessage(EventId = 2021, Level = LogLevel.Error, Message = "Connection {ConnectionId}: durable consumer {Consumer} failed")]
    private static partial void LogDurableFailed(ILogger logger, long connectionId, string consumer, Exception exception);
}
