namespace DaemonEye.Gateway.Metrics;

/// <summary>The agent's meters and instrument names (OpenTelemetry style; docs/metrics.md lists them).</summary>
public static class MetricNames
{
    public const string BusMeter = "DaemonEye.Bus";
    public const string RpcMeter = "DaemonEye.Rpc";
    public const string CollectorsMeter = "DaemonEye.Collectors";
    public const string DurableMeter = "DaemonEye.Durable";
    public const string MqttMeter = "DaemonEye.Mqtt";

    /// <summary>Every meter of the agent, for exporters.</summary>
    public static readonly string[] Meters = [BusMeter, RpcMeter, CollectorsMeter, DurableMeter, MqttMeter];

    public const string Published = "daemoneye.bus.published";
    public const string Delivered = "daemoneye.bus.delivered";
    public const string Dropped = "daemoneye.bus.dropped";
    public const string Unrouted = "daemoneye.bus.unrouted";
    public const string ProtocolErrors = "daemoneye.bus.protocol_errors";
    public const string Denied = "daemoneye.bus.denied";
    public const string Limited = "daemoneye.bus.limited";
    public const string DeliveryDuration = "daemoneye.bus.delivery.duration";
    public const string Connections = "daemoneye.bus.connections";
    public const string ConnectionsAccepted = "daemoneye.bus.connections.accepted";
    public const string Subscriptions = "daemoneye.bus.subscriptions";
    public const string Subscribers = "daemoneye.bus.subscribers";
    public const string BufferQueued = "daemoneye.bus.buffer.queued";
    public const string BufferQueuedBytes = "daemoneye.bus.buffer.queued_bytes";
    public const string BufferUtilization = "daemoneye.bus.buffer.utilization";
    public const string BuffersFull = "daemoneye.bus.buffer.full";

    public const string RpcRequests = "daemoneye.rpc.requests";
    public const string RpcResponses = "daemoneye.rpc.responses";
    public const string RpcErrors = "daemoneye.rpc.errors";
    public const string RpcDuration = "daemoneye.rpc.duration";
    public const string RpcPending = "daemoneye.rpc.pending";
    public const string RpcLateResponses = "daemoneye.rpc.late_responses";
    public const string RpcInvalidPayloads = "daemoneye.rpc.invalid_payloads";

    public const string CollectorsConnected = "daemoneye.collectors.connected";
    public const string CollectorHeartbeats = "daemoneye.collectors.heartbeats";

    public const string DurableMessages = "daemoneye.durable.messages";
    public const string DurableBytes = "daemoneye.durable.bytes";
    public const string DurableRefused = "daemoneye.durable.refused";
    public const string DurableTornTails = "daemoneye.durable.torn_tails";
    public const string DurableGroupCommits = "daemoneye.durable.group_commits";
    public const string DurableGroupedBatches = "daemoneye.durable.grouped_batches";
    public const string DurableCheckpoints = "daemoneye.durable.checkpoints";
    public const string DurableCheckpointCatchUps = "daemoneye.durable.checkpoint_catch_ups";

    public const string MqttConnections = "daemoneye.mqtt.connections";
    public const string MqttConnectionsAccepted = "daemoneye.mqtt.connections.accepted";
    public const string MqttConnectionsRefused = "daemoneye.mqtt.connections.refused";
    public const string MqttPublishRefused = "daemoneye.mqtt.publish.refused";
    public const string MqttSubscribeRefused = "daemoneye.mqtt.subscribe.refused";
    public const string MqttMessagesIn = "daemoneye.mqtt.messages.in";
    public const string MqttMessagesOut = "daemoneye.mqtt.messages.out";
    public const string MqttDropped = "daemoneye.mqtt.dropped";
    public const string MqttDurableDelivered = "daemoneye.mqtt.durable.delivered";
    public const string MqttDurableAcked = "daemoneye.mqtt.durable.acked";
    public const string MqttRetainIgnored = "daemoneye.mqtt.retain_ignored";

    public const string TopicRootTag = "topic.root";
    public const string OperationTag = "rpc.operation";
    public const string StatusTag = "rpc.status";
    public const string ErrorKindTag = "error.kind";
    public const string RuleTag = "rule";
    public const string LimitTag = "limit";

    /// <summary>
    /// Bucket upper bounds of the latency histograms, in seconds: 10 µs to 10 s. Given to exporters
    /// as the instruments' advice, so Prometheus and <c>daemoneye-cli metrics</c> show the same buckets.
    /// </summary>
    public static readonly double[] LatencyBuckets =
    [
        0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
    ];
}
