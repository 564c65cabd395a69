using DaemonEye.Gateway.Durability;
using DaemonEye.Gateway.Security;
using DaemonEye.Logging;
using Microsoft.Extensions.Logging;
using MQTTnet.Protocol;
using MQTTnet.Server;

namespace DaemonEye.Gateway.Mqtt;

/// <summary>
/// SUBSCRIBE and UNSUBSCRIBE: each MQTT filter checked by the bus's rules; the bridge holds one bus
/// subscription per distinct pattern (counted by the filters that use it); a persistent session's QoS 1
/// filter over durable topics also gets a durable consumer.
/// </summary>
internal sealed partial class MqttBridge
{
    private readonly SemaphoreSlim _liveGate = new(1, 1);
    private readonly Dictionary<string, (uint Id, int Users)> _live = new(StringComparer.Ordinal);
    private uint _lastSubscriptionId;
    private int _durableSessions;

    private async Task InterceptSubscriptionAsync(InterceptingSubscriptionEventArgs e)
    {
        if (!_clients.TryGetValue(e.ClientId, out var client))
        {
            e.Response.ReasonCode = MqttSubscribeReasonCode.NotAuthorized;
            e.ProcessSubscription = false;
            return;
        }

        var filter = e.TopicFilter.Topic;
        var pattern = MqttTopics.ToBusPattern(filter, out var error);
        if (pattern is null)
        {
            RefuseSubscription(e, client, MqttSubscribeReasonCode.TopicFilterInvalid, MqttMetrics.RefusedTopic, error!);
            return;
        }

        var policy = client.Policy;
        if (policy.CheckSubscribe(pattern) is { } rule)
        {
            var detail = $"subscribe to '{pattern}' (MQTT '{filter}') refused by rule {AccessRules.Name(rule)}: {policy.Explain(rule)}";
            _access.Denied(rule, client.Number, client.ClientId, client.Peer, detail, policy);
            RefuseSubscription(e, client, MqttSubscribeReasonCode.NotAuthorized, MqttMetrics.RefusedRule, detail, logged: true);
            return;
        }

        var durable = client.Persistent && e.TopicFilter.QualityOfServiceLevel != MqttQualityOfServiceLevel.AtMostOnce
            && _durable is not null && _durable.Patterns.Any(p => BusConnection.Overlaps(p, pattern));

        // A filter subscribed again (as clients do on reconnect) keeps what it holds.
        bool held;
        lock (client.Gate)
        {
            held = client.Live.TryGetValue(filter, out var heldPattern) && heldPattern == pattern;
        }

        if (!held)
        {
            if (await AddLiveAsync(pattern) is { } refusal)
            {
                RefuseSubscription(e, client, MqttSubscribeReasonCode.QuotaExceeded, MqttMetrics.RefusedLimitExceeded, $"subscribe to '{pattern}' refused: {refusal}");
                return;
            }

            lock (client.Gate)
            {
                client.Live[filter] = pattern;
            }
        }

        if (durable)
        {
            bool running;
            lock (client.Gate)
            {
                running = client.Durable.ContainsKey(filter);
            }

            if (!running && AttachDurable(client, filter, pattern, out var refusal) is null)
            {
                RefuseSubscription(e, client, MqttSubscribeReasonCode.ImplementationSpecificError, MqttMetrics.RefusedStorage, refusal!);
                await UnsubscribeFilterAsync(client, filter);
                return;
            }
        }

        // Live messages go out at QoS 0; QoS 1 is granted only where the durable log stands behind it.
        e.Response.ReasonCode = durable ? MqttSubscribeReasonCode.GrantedQoS1 : MqttSubscribeReasonCode.GrantedQoS0;
        LogSubscribed(_logger, client.Number, client.ClientId, filter, pattern, durable ? "QoS 1 from the durable log" : "QoS 0, live");
    }

    private async Task InterceptUnsubscriptionAsync(InterceptingUnsubscriptionEventArgs e)
    {
        if (_clients.TryGetValue(e.ClientId, out var client))
        {
            await UnsubscribeFilterAsync(client, e.Topic);
        }
    }

    /// <summary>Releases what <paramref name="filter"/> holds: its share of a live pattern, its durable session (the consumer stays stored).</summary>
    private async Task UnsubscribeFilterAsync(MqttClient client, string filter)
    {
        string? pattern;
        MqttDurableSession? session;
        lock (client.Gate)
        {
            client.Live.Remove(filter, out pattern);
            client.Durable.Remove(filter, out session);
        }

        if (session is not null)
        {
            Interlocked.Decrement(ref _durableSessions);
            await session.StopAsync();
            _durable?.Detach(session.Consumer, session.Holder);
        }

        if (pattern is not null)
        {
            await ReleaseLiveAsync(pattern);
        }
    }

    private void RefuseSubscription(InterceptingSubscriptionEventArgs e, MqttClient client, MqttSubscribeReasonCode code, int reason, string detail, bool logged = false)
    {
        _metrics.SubscribeRefused(reason);
        e.Response.ReasonCode = code;
        e.ReasonString = detail;
        e.ProcessSubscription = false;
        if (!logged)
        {
            LogSubscribeRefused(_logger, client.Number, client.ClientId, code, detail);
        }
    }

    /// <summary>Takes a share of the bridge's bus subscription to <paramref name="pattern"/>; null, or the registry's refusal.</summary>
    private async Task<string?> AddLiveAsync(string pattern)
    {
        await _liveGate.WaitAsync();
        try
        {
            if (_live.TryGetValue(pattern, out var live))
            {
                _live[pattern] = (live.Id, live.Users + 1);
                return null;
            }

            var id = ++_lastSubscriptionId;
            var result = await _local.SubscribeAsync(_localId, id, pattern);
            if (!result.Accepted)
            {
                if (Limits.FromKey(result.Limit) is { } limit)
                {
                    _stats.AddLimitRefusal(limit);
                }

                return result.Error;
            }

            _live[pattern] = (id, 1);
            return null;
        }
        finally
        {
            _liveGate.Release();
        }
    }

    private async Task ReleaseLiveAsync(string pattern)
    {
        await _liveGate.WaitAsync();
        try
        {
            if (!_live.TryGetValue(pattern, out var live))
            {
                return;
            }

            if (live.Users > 1)
            {
                _live[pattern] = (live.Id, live.Users - 1);
                return;
            }

            _live.Remove(pattern);
            await _local.UnsubscribeAsync(_localId, live.Id);
        }
        finally
        {
            _liveGate.Release();
        }
    }

    /// <summary>
    /// Attaches the durable consumer of <paramref name="client"/>'s <paramref name="filter"/> (created at the
    /// log's end when new: an MQTT subscription starts with what is published after it) and starts its
    /// session; null with <paramref name="refusal"/> when the log refuses (another connection holds it).
    /// </summary>
    private MqttDurableSession? AttachDurable(MqttClient client, string filter, string pattern, out string? refusal)
    {
        var log = _durable!;
        var consumer = MqttClient.ConsumerName(client.Identity, client.ClientId, filter);
        var number = client.Number;
        ulong? acked;
        try
        {
            acked = log.Attach(consumer, pattern, ConsumerStart.NewOnly, 0, default, number, out refusal);
        }
        catch (DurableLogUnavailableException ex)
        {
            refusal = ex.Message;
            return null;
        }

        if (acked is not { } position)
        {
            return null;
        }

        FilterEnqueues();
        var clientId = client.ClientId;
        var session = new MqttDurableSession(log, (row, stop) => InjectDurableAsync(clientId, row, stop), consumer, pattern, number, position, Math.Min(_options.MaxInflight, log.Options.MaxAckPending),
            fault => LogDurableFailed(_logger, number, clientId, filter, consumer, fault));
        log.Serve(consumer, number, session);
        lock (client.Gate)
        {
            client.Durable[filter] = session;
        }

        Interlocked.Increment(ref _durableSessions);
        LogDurableAttached(_logger, number, client.ClientId, filter, consumer, position);

        // Not started here: this runs while MQTTnet intercepts the SUBSCRIBE, before the filter is in the
        // client's session, and a backlog injected now would match no subscription and be lost in flight
        // (never acknowledged, the pump's window never freed). SubscribedAsync starts it once MQTTnet has
        // added the filter.
        return session;
    }

    /// <summary>MQTTnet has added <c>e.TopicFilter</c> to the client's session: start the durable session it holds, if any.</summary>
    private Task SubscribedAsync(ClientSubscribedTopicEventArgs e)
    {
        if (_clients.TryGetValue(e.ClientId, out var client))
        {
            MqttDurableSession? session;
            lock (client.Gate)
            {
                client.Durable.TryGetValue(e.TopicFilter.Topic, out session);
            }

            session?.Start();
        }

        return Task.CompletedTask;
    }

    [LoggerMessage(EventId = 2820, Level = LogLevel.Information, Message = "MQTT connection {Number} ({ClientId}) subscribed to {Filter} (bus {Pattern}): {Mode}")]
    private static partial void LogSubscribed(ILogger logger, long number, Untrusted clientId, Untrusted filter, string pattern, string mode);

    [LoggerMessage(EventId = 2821, Level = LogLevel.Warning, Message = "MQTT connection {Number} ({ClientId}): subscribe refused ({Code}): {Detail}")]
    private static partial void LogSubscribeRefused(ILogger logger, long number, Untrusted clientId, MqttSubscribeReasonCode code, Untrusted detail);

    [LoggerMessage(EventId = 2822, Level = LogLevel.Information, Message = "MQTT connection {Number} ({ClientId}): filter {Filter} holds durable consumer {Consumer}, resuming after sequence {Acked}")]
    private static partial void LogDurableAttached(ILogger logger, long number, Untrusted clientId, Untrusted filter, string consumer, ulong acked);

    [LoggerMessage(EventId = 2823, Level = LogLevel.Error, Message = "MQTT connection {Number} ({ClientId}): the durable session of filter {Filter} (consumer {Consumer}) stopped; it resumes from its last ack when the client reconnects")]
    private static partial void LogDurableFailed(ILogger logger, long number, Untrusted clientId, Untrusted filter, string consumer, Exception exception);
}
