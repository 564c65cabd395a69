using DaemonEye.Gateway.Security;
using DaemonEye.Grains;
using DaemonEye.Protocol;
using DaemonEye.Protocol.V1;
using DaemonEye.Topics;
using ErrorCode = DaemonEye.Protocol.V1.ErrorCode;

namespace DaemonEye.Gateway;

/// <summary>Subscribe and Unsubscribe through the registry grain; acks activate and deactivate deliveries in order.</summary>
internal sealed partial class BusConnection
{
    private async Task SubscribeAsync(uint requestId, Subscribe subscribe)
    {
        var pattern = subscribe.Pattern;
        var validation = TopicRules.ValidatePattern(pattern);
        if (!validation.IsValid)
        {
            TryEnqueueError(requestId, ErrorCode.InvalidPattern, $"subscribe refused: {validation.Error}");
            return;
        }

        if (_policy.CheckSubscribe(pattern) is { } rule)
        {
            Deny(rule, requestId, $"subscribe to '{pattern}'");
            return;
        }

        if (subscribe.DurableConsumer.Length > 0)
        {
            SubscribeDurable(requestId, subscribe);
            return;
        }

        if (_subscriptions.Count >= _maxSubscriptions)
        {
            _stats.AddLimitRefusal(Limit.MaxSubscriptionsPerConnection);
            TryEnqueueError(requestId, ErrorCode.LimitExceeded,
                $"subscribe to '{pattern}' refused: broker.max_subscriptions_per_connection ({_maxSubscriptions}) reached on this connection; unsubscribe some or raise broker.max_subscriptions_per_connection");
            return;
        }

        var id = ++_lastSubscriptionId;
        var result = await Registry.Subscribe(new SubscriptionKey(Id, id), pattern);
        if (!result.Accepted)
        {
            if (Limits.FromKey(result.Limit) is { } limit)
            {
                _stats.AddLimitRefusal(limit);
            }

            TryEnqueueError(requestId, ErrorCode.LimitExceeded, $"subscribe to '{pattern}' refused: {result.Error}");
            return;
        }

        _subscriptions[id] = pattern;
        QueueAck(id, Framing.ToFrame(new Envelope
        {
            RequestId = requestId,
            SubscribeAck = new SubscribeAck { SubscriptionId = id, Pattern = pattern },
        }), active: true);
    }

    private async Task UnsubscribeAsync(uint requestId, uint id)
    {
        if (!_subscriptions.Remove(id))
        {
            var known = _subscriptions.Count == 0 ? "none" : string.Join(", ", _subscriptions.Keys.Order());
            TryEnqueueError(requestId, ErrorCode.UnknownSubscription, $"subscription {id} does not exist on this connection; its subscriptions: {known}");
            return;
        }

        if (_durableSubscriptions.ContainsKey(id))
        {
            await StopDurableAsync(id);
            QueueControl(Framing.ToFrame(new Envelope { RequestId = requestId, UnsubscribeAck = new UnsubscribeAck { SubscriptionId = id } }));
            return;
        }

        await Registry.Unsubscribe(new SubscriptionKey(Id, id));
        QueueAck(id, Framing.ToFrame(new Envelope
        {
            RequestId = requestId,
            UnsubscribeAck = new UnsubscribeAck { SubscriptionId = id },
        }), active: false);
    }
}
