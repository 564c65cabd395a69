using System.Buffers;
using System.Text;
using DaemonEye.Gateway.Security;
using DaemonEye.Logging;
using DaemonEye.Protocol.V1;
using Google.Protobuf;
using Microsoft.Extensions.Logging;
using MQTTnet.Protocol;
using MQTTnet.Server;

namespace DaemonEye.Gateway.Mqtt;

/// <summary>PUBLISH from MQTT clients: mapped, checked by the bus's rules and routed as a bus connection's publish is.</summary>
internal sealed partial class MqttBridge
{
    private async Task InterceptPublishAsync(InterceptingPublishEventArgs e)
    {
        if (string.IsNullOrEmpty(e.ClientId) || e.ClientId[0] == '$')
        {
            // The bridge's own injections (bus messages for MQTT clients): MQTTnet fans them out.
            return;
        }

        // Whatever happens, MQTTnet does not route it: the bus delivers it back to MQTT subscribers.
        e.ProcessPublish = false;
        if (!_clients.TryGetValue(e.ClientId, out var client) || client.Publishes is not { } publishes)
        {
            e.CloseConnection = true;
            return;
        }

        var message = e.ApplicationMessage;
        var topic = client.BusTopic(message.Topic, out var error);
        if (topic is null)
        {
            RefusePublish(e, client, MqttPubAckReasonCode.TopicNameInvalid, MqttMetrics.RefusedTopic, error!);
            return;
        }

        // A valid bus topic is ASCII of at most TopicRules.MaxBytes bytes.
        Span<byte> utf8 = stackalloc byte[Topics.TopicRules.MaxBytes];
        var entry = publishes.Resolve(utf8[..Encoding.ASCII.GetBytes(topic, utf8)], out error, out var limit);
        if (entry is null)
        {
            if (limit is { } refusedBy)
            {
                _stats.AddLimitRefusal(refusedBy);
                RefusePublish(e, client, MqttPubAckReasonCode.QuotaExceeded, MqttMetrics.RefusedLimitExceeded, error!);
            }
            else
            {
                RefusePublish(e, client, MqttPubAckReasonCode.TopicNameInvalid, MqttMetrics.RefusedTopic, error!);
            }

            return;
        }

        if (publishes.AdmitTopic(entry) is { } full)
        {
            _stats.AddLimitRefusal(Limit.MaxTopics);
            RefusePublish(e, client, MqttPubAckReasonCode.QuotaExceeded, MqttMetrics.RefusedLimitExceeded, full);
            return;
        }

        var policy = client.Policy;
        if (policy.CheckPublish(entry) is { } rule)
        {
            var detail = $"publish to '{topic}' (MQTT '{message.Topic}') refused by rule {AccessRules.Name(rule)}: {policy.Explain(rule)}";
            _access.Denied(rule, client.Number, client.ClientId, client.Peer, detail, policy);
            RefusePublish(e, client, MqttPubAckReasonCode.NotAuthorized, MqttMetrics.RefusedRule, detail, logged: true);
            return;
        }

        if (message.Retain)
        {
            // Nothing is retained on the bus; the message still goes out, live.
            _metrics.RetainIgnored();
        }

        var bytes = new Publish
        {
            Topic = topic,
            Payload = UnsafeByteOperations.UnsafeWrap(message.Payload.ToArray()),
            ContentType = message.ContentType ?? string.Empty,
            TimestampUnixNanos = Rpc.RpcRouter.ToUnixNanos(_time.GetUtcNow()),
        }.ToByteArray();
        if (bytes.Length > _broker.MaxFrameSize)
        {
            _stats.AddLimitRefusal(Limit.MaxFrameSize);
            RefusePublish(e, client, MqttPubAckReasonCode.PayloadFormatInvalid, MqttMetrics.RefusedLimitExceeded,
                $"publish to '{topic}' of {bytes.Length} bytes refused: broker.max_frame_size is {_broker.MaxFrameSize}");
            return;
        }

        publishes.Add(entry, bytes);
        try
        {
            await publishes.FlushAsync(client.Number);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            _stats.AddUnrouted(1);
            LogRoutingFailed(_logger, client.Number, client.ClientId, ex);
            RefusePublish(e, client, MqttPubAckReasonCode.UnspecifiedError, MqttMetrics.RefusedStorage, $"publish to '{topic}' could not be routed: {ex.Message}");
            return;
        }

        if (publishes.Refused.Count > 0)
        {
            var reason = publishes.Refused[0].Reason;
            publishes.Refused.Clear();
            _stats.AddLimitRefusal(Limit.DurableLogUnavailable);
            RefusePublish(e, client, MqttPubAckReasonCode.UnspecifiedError, MqttMetrics.RefusedStorage, $"publish to durable topic '{topic}' refused: {reason}");
            return;
        }

        _stats.AddPublished(1);
        _metrics.MessagesIn(1);
    }

    /// <summary>
    /// Refuses a PUBLISH: MQTT 5 at QoS 1 or 2 hears the reason in its PUBACK/PUBREC; otherwise MQTT has no
    /// way to tell the client (MQTT 3.1.1 §3.3.5), so the connection is closed rather than the message
    /// silently dropped. Counted; logged within a budget.
    /// </summary>
    private void RefusePublish(InterceptingPublishEventArgs e, MqttClient client, MqttPubAckReasonCode code, int reason, string detail, bool logged = false)
    {
        _metrics.PublishRefused(reason);
        e.Response.ReasonCode = code;
        e.Response.ReasonString = detail;
        if (!client.V5 || e.ApplicationMessage.QualityOfServiceLevel == MqttQualityOfServiceLevel.AtMostOnce)
        {
            e.CloseConnection = true;
        }

        if (!logged)
        {
            LogPublishRefused(_logger, client.Number, client.ClientId, code, detail);
        }
    }

    [LoggerMessage(EventId = 2810, Level = LogLevel.Warning, Message = "MQTT connection {Number} ({ClientId}): publish refused ({Code}): {Detail}")]
    private static partial void LogPublishRefused(ILogger logger, long number, Untrusted clientId, MqttPubAckReasonCode code, Untrusted detail);

    [LoggerMessage(EventId = 2811, Level = LogLevel.Error, Message = "MQTT connection {Number} ({ClientId}): a published message could not be routed")]
    private static partial void LogRoutingFailed(ILogger logger, long number, Untrusted clientId, Exception exception);
}
