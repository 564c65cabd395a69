using System.Diagnostics.Metrics;
using DaemonEye.Gateway.Metrics;

namespace DaemonEye.Gateway.Mqtt;

/// <summary>
/// The MQTT listener's instruments (meter <c>DaemonEye.Mqtt</c>, docs/metrics.md): connections now and
/// accepted (by transport), connections refused and requests refused (by reason), messages in (MQTT
/// clients onto the bus) and out (queued for MQTT clients), messages dropped for clients whose queue
/// was full. Plain interlocked counts in fixed arrays, reported by observable instruments.
/// </summary>
internal sealed class MqttMetrics
{
    public const int TransportUnix = 0;
    public const int TransportTcp = 1;
    private static readonly string[] Transports = ["unix", "tcp"];

    public const int RefusedPeer = 0;
    public const int RefusedCredentials = 1;
    public const int RefusedLimit = 2;
    public const int RefusedClientId = 3;
    private static readonly string[] ConnectionRefusals = ["peer_credentials", "bad_user_name_or_password", "mqtt.max_connections", "client_id"];

    public const int RefusedTopic = 0;
    public const int RefusedRule = 1;
    public const int RefusedLimitExceeded = 2;
    public const int RefusedStorage = 3;
    private static readonly string[] RequestRefusals = ["invalid_topic", "access_rule", "limit", "durable_log"];

    private readonly long[] _accepted = new long[Transports.Length];
    private readonly long[] _connectionsRefused = new long[ConnectionRefusals.Length];
    private readonly long[] _publishRefused = new long[RequestRefusals.Length];
    private readonly long[] _subscribeRefused = new long[RequestRefusals.Length];
    private long _in;
    private long _out;
    private long _dropped;
    private long _durableOut;
    private long _durableAcked;
    private long _retainIgnored;
    private Func<int> _connections = () => 0;

    public MqttMetrics(IMeterFactory meters)
    {
        var meter = meters.Create(MetricNames.MqttMeter);
        meter.CreateObservableUpDownCounter(MetricNames.MqttConnections, () => _connections(), "{connection}",
            "MQTT clients connected now (Unix socket and TCP)");
        meter.CreateObservableCounter(MetricNames.MqttConnectionsAccepted, () => Tagged(_accepted, Transports, "transport"), "{connection}",
            "MQTT connections accepted, by transport (unix, tcp), before authentication");
        meter.CreateObservableCounter(MetricNames.MqttConnectionsRefused, () => Tagged(_connectionsRefused, ConnectionRefusals, "reason"), "{connection}",
            "MQTT connections refused, by reason: peer_credentials (Unix socket), bad_user_name_or_password (TCP), mqtt.max_connections, client_id");
        meter.CreateObservableCounter(MetricNames.MqttPublishRefused, () => Tagged(_publishRefused, RequestRefusals, "reason"), "{message}",
            "MQTT PUBLISH packets refused, by reason: invalid_topic, access_rule (the bus's rules, also in daemoneye.bus.denied), limit, durable_log");
        meter.CreateObservableCounter(MetricNames.MqttSubscribeRefused, () => Tagged(_subscribeRefused, RequestRefusals, "reason"), "{subscription}",
            "MQTT topic filters refused in SUBSCRIBE, by reason: invalid_topic, access_rule, limit, durable_log");
        meter.CreateObservableCounter(MetricNames.MqttMessagesIn, () => Interlocked.Read(ref _in), "{message}",
            "Messages MQTT clients published that were routed onto the bus");
        meter.CreateObservableCounter(MetricNames.MqttMessagesOut, () => Interlocked.Read(ref _out), "{message}",
            "Live bus messages handed to the MQTT clients that subscribed to them (once per message, however many clients match)");
        meter.CreateObservableCounter(MetricNames.MqttDropped, () => Interlocked.Read(ref _dropped), "{message}",
            "Messages dropped: the oldest queued for an MQTT client whose queue held mqtt.max_pending_messages, or new ones when the bridge's own queue was full");
        meter.CreateObservableCounter(MetricNames.MqttDurableDelivered, () => Interlocked.Read(ref _durableOut), "{message}",
            "QoS 1 messages sent from the durable log to persistent MQTT sessions");
        meter.CreateObservableCounter(MetricNames.MqttDurableAcked, () => Interlocked.Read(ref _durableAcked), "{message}",
            "PUBACKs from persistent MQTT sessions that advanced their durable consumer");
        meter.CreateObservableCounter(MetricNames.MqttRetainIgnored, () => Interlocked.Read(ref _retainIgnored), "{message}",
            "Retained PUBLISH packets routed live without being retained (the bus keeps no retained messages)");
    }

    /// <summary>Sets where the connected count comes from (the bridge).</summary>
    public void ObserveConnections(Func<int> connections) => _connections = connections;

    public void Accepted(int transport) => Interlocked.Increment(ref _accepted[transport]);

    public void ConnectionRefused(int reason) => Interlocked.Increment(ref _connectionsRefused[reason]);

    public void PublishRefused(int reason) => Interlocked.Increment(ref _publishRefused[reason]);

    public void SubscribeRefused(int reason) => Interlocked.Increment(ref _subscribeRefused[reason]);

    public void MessagesIn(int count) => Interlocked.Add(ref _in, count);

    public void MessageOut() => Interlocked.Increment(ref _out);

    public void Dropped(long count) => Interlocked.Add(ref _dropped, count);

    public void DurableDelivered() => Interlocked.Increment(ref _durableOut);

    public void RetainIgnored() => Interlocked.Increment(ref _retainIgnored);

    public void DurableAcked() => Interlocked.Increment(ref _durableAcked);

    public long RefusedConnections(int reason) => Interlocked.Read(ref _connectionsRefused[reason]);

    public long RefusedPublishes(int reason) => Interlocked.Read(ref _publishRefused[reason]);

    private static IEnumerable<Measurement<long>> Tagged(long[] counts, string[] names, string tag)
    {
        for (var i = 0; i < counts.Length; i++)
        {
            yield return new Measurement<long>(Interlocked.Read(ref counts[i]), new KeyValuePair<string, object?>(tag, names[i]));
        }
    }
}
