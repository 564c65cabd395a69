namespace DaemonEye.Gateway.Security;

/// <summary>The access rules a bus action or an IPC request can be denied by. Each has a stable name used in error
/// messages, logs and counters (see <see cref="AccessRules.Name"/>).</summary>
public enum AccessRule
{
    /// <summary>ROLE_COLLECTOR from a process the agent did not start, without the registration token configured for its id.</summary>
    CollectorAuthentication,

    /// <summary>A collector declared <c>publish:</c> outside <c>events.#</c>.</summary>
    CollectorDeclaredPublish,

    /// <summary>A collector published outside its declared event domains and its own <c>control.health.+.&lt;id&gt;</c> topics.</summary>
    CollectorPublish,

    /// <summary>A collector subscribed outside its own control topics.</summary>
    CollectorSubscribe,

    /// <summary>A collector made an RPC call (collectors answer calls; they do not make them).</summary>
    CollectorRpcCall,

    /// <summary>An RpcResponse from a connection that is not the callee of that call.</summary>
    RpcAnswer,

    /// <summary>A read-only subscriber published.</summary>
    SubscriberPublish,

    /// <summary>A read-only subscriber made an RPC call.</summary>
    SubscriberRpcCall,

    /// <summary>A client (not cli) published on a <c>control.</c> topic.</summary>
    ClientPublishControl,

    /// <summary>An IPC request that operates the agent (<see cref="IpcAccess.Operate"/>) from a caller with the reader role.</summary>
    IpcOperate,

    /// <summary>An RPC call that operates a collector (<see cref="RpcOperations"/>) from a bus connection that is not an operator.</summary>
    RpcOperate,

    /// <summary>The cli role published on a topic only the agent and the collectors use (<c>control.collector.#</c>, <c>control.health.#</c>).</summary>
    CliPublishAgentTopic,
}

/// <summary>Names and descriptions of <see cref="AccessRule"/>.</summary>
public static class AccessRules
{
    public static readonly AccessRule[] All = Enum.GetValues<AccessRule>();

    public static int Count => All.Length;

    public static string Name(AccessRule rule) => rule switch
    {
        AccessRule.CollectorAuthentication => "collector.authentication",
        AccessRule.CollectorDeclaredPublish => "collector.declared_publish",
        AccessRule.CollectorPublish => "collector.publish",
        AccessRule.CollectorSubscribe => "collector.subscribe",
        AccessRule.CollectorRpcCall => "collector.rpc_call",
        AccessRule.RpcAnswer => "rpc.answer",
        AccessRule.SubscriberPublish => "subscriber.publish",
        AccessRule.SubscriberRpcCall => "subscriber.rpc_call",
        AccessRule.ClientPublishControl => "client.publish_control",
        AccessRule.IpcOperate => "ipc.operate",
        AccessRule.RpcOperate => "rpc.operate",
        AccessRule.CliPublishAgentTopic => "cli.publish_agent_topic",
        _ => rule.ToString(),
    };
}

/// <summary>The limits a request can run into, each counted when it refuses something.</summary>
public enum Limit
{
    /// <summary><c>broker.max_connections</c>.</summary>
    MaxConnections,

    /// <summary><c>broker.max_subscriptions_per_connection</c>.</summary>
    MaxSubscriptionsPerConnection,

    /// <summary><c>broker.max_subscribers</c> (all connections).</summary>
    MaxSubscribers,

    /// <summary><c>broker.max_subscribers_per_topic</c>.</summary>
    MaxSubscribersPerTopic,

    /// <summary><c>broker.max_frame_size</c>.</summary>
    MaxFrameSize,

    /// <summary>Correlation id length and format (Publish and RpcRequest).</summary>
    CorrelationId,

    /// <summary><c>broker.max_outbound_bytes</c>: a connection cut off because it does not read.</summary>
    MaxOutboundBytes,

    /// <summary><c>broker.max_topics</c>: live topics in the agent.</summary>
    MaxTopics,

    /// <summary><c>broker.max_topics_per_connection</c>.</summary>
    MaxTopicsPerConnection,

    /// <summary><c>broker.handshake_timeout_seconds</c>: no complete Hello in time.</summary>
    HandshakeTimeout,

    /// <summary><c>broker.frame_timeout_seconds</c>: a frame begun and not finished in time.</summary>
    FrameTimeout,

    /// <summary><c>broker.idle_timeout_seconds</c>: nothing received from a connection without subscriptions.</summary>
    IdleTimeout,

    /// <summary><c>ipc.max_connections</c>.</summary>
    IpcMaxConnections,

    /// <summary><c>ipc.idle_timeout_seconds</c>: no complete request in time.</summary>
    IpcIdleTimeout,

    /// <summary>A failed accept on the bus socket (EMFILE/ENFILE: out of file descriptors; ENOBUFS, ENOMEM).</summary>
    BusAcceptFailed,

    /// <summary>A failed accept on the IPC socket.</summary>
    IpcAcceptFailed,

    /// <summary>A connection (either socket) refused to keep <c>UnixSocketServer.DescriptorReserve</c> descriptors free under RLIMIT_NOFILE.</summary>
    DescriptorReserve,

    /// <summary><c>broker.correlation_window</c>: a publish repeating a recent correlation id of its connection.</summary>
    CorrelationWindow,

    /// <summary>A publish to a durable topic the durable log could not take (disk full, I/O error).</summary>
    DurableLogUnavailable,

    /// <summary>A failed accept on the MQTT socket.</summary>
    MqttAcceptFailed,

    /// <summary><c>mqtt.max_connections</c>.</summary>
    MqttMaxConnections,

    /// <summary><c>mqtt.max_pending_messages</c>: a message dropped for an MQTT client whose queue was full.</summary>
    MqttMaxPendingMessages,
}

/// <summary>Names of <see cref="Limit"/>: the configuration key, <c>correlation_id</c>, or <c>accept_failed.bus|ipc</c>.</summary>
public static class Limits
{
    public static readonly Limit[] All = Enum.GetValues<Limit>();

    public static int Count => All.Length;

    public static string Name(Limit limit) => limit switch
    {
        Limit.MaxConnections => "broker.max_connections",
        Limit.MaxSubscriptionsPerConnection => "broker.max_subscriptions_per_connection",
        Limit.MaxSubscribers => "broker.max_subscribers",
        Limit.MaxSubscribersPerTopic => "broker.max_subscribers_per_topic",
        Limit.MaxFrameSize => "broker.max_frame_size",
        Limit.CorrelationId => "correlation_id",
        Limit.MaxOutboundBytes => "broker.max_outbound_bytes",
        Limit.MaxTopics => "broker.max_topics",
        Limit.MaxTopicsPerConnection => "broker.max_topics_per_connection",
        Limit.HandshakeTimeout => "broker.handshake_timeout_seconds",
        Limit.FrameTimeout => "broker.frame_timeout_seconds",
        Limit.IdleTimeout => "broker.idle_timeout_seconds",
        Limit.IpcMaxConnections => "ipc.max_connections",
        Limit.IpcIdleTimeout => "ipc.idle_timeout_seconds",
        Limit.BusAcceptFailed => "accept_failed.bus",
        Limit.IpcAcceptFailed => "accept_failed.ipc",
        Limit.CorrelationWindow => "broker.correlation_window",
        Limit.DescriptorReserve => "rlimit_nofile",
        Limit.DurableLogUnavailable => "durability.refused",
        Limit.MqttAcceptFailed => "accept_failed.mqtt",
        Limit.MqttMaxConnections => "mqtt.max_connections",
        Limit.MqttMaxPendingMessages => "mqtt.max_pending_messages",
        _ => limit.ToString(),
    };

    /// <summary>The limit a registry refusal names by its key; null when the key is not one of ours.</summary>
    public static Limit? FromKey(string? key) => key switch
    {
        "broker.max_subscribers" => Limit.MaxSubscribers,
        "broker.max_subscribers_per_topic" => Limit.MaxSubscribersPerTopic,
        _ => null,
    };
}
