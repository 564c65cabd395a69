using System.Buffers;
using System.Globalization;
using System.Threading.Channels;
using DaemonEye.Gateway.Durability;
using DaemonEye.Gateway.Security;
using DaemonEye.Grains;
using DaemonEye.Protocol.V1;
using Microsoft.Extensions.Logging;
using MQTTnet;
using MQTTnet.Packets;
using MQTTnet.Protocol;
using MQTTnet.Server;

namespace DaemonEye.Gateway.Mqtt;

/// <summary>
/// Bus → MQTT. Live: the Topic routes hand the bridge, one of the agent's own subscribers
/// (<see cref="LocalSubscriptions"/>), each message once, whatever number of MQTT clients want it, and
/// before any socket connection; the bridge queues it and a single pump injects it into MQTTnet at QoS 0,
/// which copies it to every MQTT session whose filter matches. Durable: each <see cref="MqttDurableSession"/> injects its
/// messages at QoS 1 addressed to its own client only; their PUBACKs advance its consumer.
/// </summary>
internal sealed partial class MqttBridge : ILocalSubscriber
{
    /// <summary>The user property that carries the durable log's sequence on a durable message (seen by MQTT 5 clients).</summary>
    internal const string SequenceProperty = "daemoneye-sequence";

    private readonly Channel<PublishBatch> _pending;
    private Task _pump = Task.CompletedTask;
    private long _queued;
    private int _filtering;

    /// <summary>Messages the bridge's own queue holds at most (between the Topic routes and MQTTnet); beyond, dropped and counted.</summary>
    private int QueueCapacity => Math.Max(65_536, _options.MaxPendingMessages);

    /// <summary>Called by a Topic route under its lock: never blocks; queues the batch or drops (counts) it.</summary>
    public int Deliver(DeliveryTarget target, PublishBatch batch, ulong firstSequence)
    {
        var count = batch.Count;
        if (Interlocked.Add(ref _queued, count) > QueueCapacity || !_pending.Writer.TryWrite(batch.Stable()))
        {
            Interlocked.Add(ref _queued, -count);
            _metrics.Dropped(count);
            _stats.AddLimitRefusal(Limit.MqttMaxPendingMessages);
            return 0;
        }

        return count;
    }

    private async Task PumpAsync()
    {
        await foreach (var batch in _pending.Reader.ReadAllAsync())
        {
            var topic = MqttTopicOf(batch.Topic);
            for (var i = 0; i < batch.Count; i++)
            {
                try
                {
                    var publish = Publish.Parser.ParseFrom(batch.Message(i).Span);
                    await _server.InjectApplicationMessage(new InjectedMqttApplicationMessage(ToMqttMessage(topic, publish, MqttQualityOfServiceLevel.AtMostOnce))
                    {
                        SenderClientId = LiveSender,
                    });
                    _metrics.MessageOut();
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    _metrics.Dropped(1);
                    LogInjectFailed(_logger, batch.Topic, ex);
                }
            }

            Interlocked.Add(ref _queued, -batch.Count);
        }
    }

    // Bus topic to MQTT topic name, read and written by the pump only.
    private readonly Dictionary<string, string> _mqttTopics = new(StringComparer.Ordinal);

    private string MqttTopicOf(string busTopic)
    {
        if (!_mqttTopics.TryGetValue(busTopic, out var mqtt))
        {
            if (_mqttTopics.Count >= MqttClient.MaxCachedTopics)
            {
                _mqttTopics.Clear();
            }

            _mqttTopics[busTopic] = mqtt = MqttTopics.ToMqtt(busTopic);
        }

        return mqtt;
    }

    private static MqttApplicationMessage ToMqttMessage(string topic, Publish publish, MqttQualityOfServiceLevel qos) => new()
    {
        Topic = topic,
        Payload = new ReadOnlySequence<byte>(publish.Payload.Memory),
        QualityOfServiceLevel = qos,
        ContentType = publish.ContentType.Length == 0 ? null : publish.ContentType,
    };

    /// <summary>Injects one durable message for <paramref name="clientId"/> only, at QoS 1, carrying its log sequence.</summary>
    internal async Task InjectDurableAsync(string clientId, LoggedMessage row, CancellationToken cancellationToken)
    {
        var message = ToMqttMessage(MqttTopics.ToMqtt(row.Topic), Publish.Parser.ParseFrom(row.Publish.Span), MqttQualityOfServiceLevel.AtLeastOnce);
        message.UserProperties = [new MqttUserProperty(SequenceProperty, System.Text.Encoding.ASCII.GetBytes(row.Sequence.ToString(CultureInfo.InvariantCulture)).AsMemory())];
        await _server.InjectApplicationMessage(new InjectedMqttApplicationMessage(message) { SenderClientId = DurableSenderPrefix + clientId }, cancellationToken);
        _metrics.DurableDelivered();
    }

    /// <summary>Per receiving session: a live message a durable session covers is not sent twice; a durable message goes to its client only.</summary>
    private Task InterceptEnqueueAsync(InterceptingClientApplicationMessageEnqueueEventArgs e)
    {
        var sender = e.SenderClientId;
        if (ReferenceEquals(sender, LiveSender) || sender == LiveSender)
        {
            if (Volatile.Read(ref _durableSessions) > 0 && _durable is not null
                && _clients.TryGetValue(e.ReceiverClientId, out var client))
            {
                var topic = e.ApplicationMessage.Topic.Replace('/', Topics.TopicRules.Separator);
                if (_durable.IsDurable(topic) && client.CoversDurably(topic))
                {
                    e.AcceptEnqueue = false;
                }
            }
        }
        else if (sender.StartsWith(DurableSenderPrefix, StringComparison.Ordinal))
        {
            e.AcceptEnqueue = e.ReceiverClientId.AsSpan().SequenceEqual(sender.AsSpan(DurableSenderPrefix.Length));
        }

        return Task.CompletedTask;
    }

    /// <summary>
    /// A client's queue held mqtt.max_pending_messages and its oldest message was dropped: counted. When
    /// that message came from the durable log, the client is cut off instead of left with a gap: it
    /// resumes from its last acknowledgement when it reconnects.
    /// </summary>
    private async Task OverflowedAsync(QueueMessageOverwrittenEventArgs e)
    {
        _metrics.Dropped(1);
        _stats.AddLimitRefusal(Limit.MqttMaxPendingMessages);
        if (e.Packet is MqttPublishPacket { UserProperties: { Count: > 0 } properties } && properties.Exists(p => p.Name == SequenceProperty))
        {
            LogDurableOverflow(_logger, e.ReceiverClientId, _options.MaxPendingMessages);
            await _server.DisconnectClientAsync(e.ReceiverClientId, new MqttServerClientDisconnectOptions { ReasonCode = MqttDisconnectReasonCode.QuotaExceeded, ReasonString = "mqtt.max_pending_messages reached; reconnect to resume from the last acknowledged message" });
        }
    }

    /// <summary>Filters live messages per receiving client once a durable session exists (until then MQTTnet skips the per-client event).</summary>
    private void FilterEnqueues()
    {
        if (Interlocked.Exchange(ref _filtering, 1) == 0)
        {
            _server.InterceptingClientEnqueueAsync += InterceptEnqueueAsync;
        }
    }

    private Task AcknowledgedAsync(ClientAcknowledgedPublishPacketEventArgs e)
    {
        if (!e.IsCompleted || e.PublishPacket.UserProperties is not { Count: > 0 } properties || !_clients.TryGetValue(e.ClientId, out var client))
        {
            return Task.CompletedTask;
        }

        foreach (var property in properties)
        {
            if (property.Name == SequenceProperty && ulong.TryParse(property.ValueBuffer.Span, NumberStyles.None, CultureInfo.InvariantCulture, out var sequence))
            {
                List<MqttDurableSession> sessions;
                lock (client.Gate)
                {
                    sessions = [.. client.Durable.Values];
                }

                foreach (var session in sessions)
                {
                    if (session.Acknowledge(sequence))
                    {
                        _metrics.DurableAcked();
                    }
                }
            }
        }

        return Task.CompletedTask;
    }

    [LoggerMessage(EventId = 2830, Level = LogLevel.Error, Message = "MQTT: a message on {Topic} could not be handed to MQTT clients")]
    private static partial void LogInjectFailed(ILogger logger, string topic, Exception exception);

    [LoggerMessage(EventId = 2831, Level = LogLevel.Warning, Message = "MQTT client {ClientId} cut off: a durable message found its queue full (mqtt.max_pending_messages {Max}); it resumes from its last ack when it reconnects")]
    private static partial void LogDurableOverflow(ILogger logger, Logging.Untrusted clientId, int max);
}
