namespace DaemonEye.Topics;

/// <summary>
/// The topic names and patterns the agent, the SDK and the shipped collectors agree on: the product
/// document's hierarchy ("EventBus Topic Hierarchy", "Control Topics") in one place. Anything that
/// names one of these topics refers to this class; <see cref="TopicRules"/> says what any topic may
/// look like.
/// </summary>
public static class WellKnownTopics
{
    /// <summary>Every event topic: the domain collectors and clients publish in.</summary>
    public const string AllEvents = "events.#";

    /// <summary>Collector control: <c>control.collector.&lt;id&gt;</c> is the RPC address of collector <c>id</c>.</summary>
    public const string CollectorPrefix = "control.collector.";

    /// <summary>Every collector control topic.</summary>
    public const string AllCollectorControl = "control.collector.#";

    /// <summary>Collector started, stopped, crashed, restarted (the agent's process manager).</summary>
    public const string CollectorLifecycle = "control.collector.lifecycle";

    /// <summary>Configuration changes applied to collectors.</summary>
    public const string CollectorConfig = "control.collector.config";

    /// <summary>Task announcements and outcomes (multi-collector coordination).</summary>
    public const string CollectorTask = "control.collector.task";

    /// <summary>Every health topic.</summary>
    public const string AllHealth = "control.health.#";

    /// <summary><c>control.health.heartbeat.&lt;id&gt;</c>: collector <c>id</c>'s heartbeats.</summary>
    public const string HeartbeatPrefix = "control.health.heartbeat.";

    /// <summary><c>control.health.diagnostics.&lt;id&gt;</c>: collector <c>id</c>'s diagnostics.</summary>
    public const string DiagnosticsPrefix = "control.health.diagnostics.";

    /// <summary>The agent's own health summary.</summary>
    public const string HealthStatus = "control.health.status";

    /// <summary>Every process event (procmond).</summary>
    public const string AllProcess = "events.process.#";

    public const string ProcessLifecycle = "events.process.lifecycle";

    public const string ProcessMetadata = "events.process.metadata";

    public const string ProcessTree = "events.process.tree";

    public const string ProcessIntegrity = "events.process.integrity";

    public const string ProcessAnomaly = "events.process.anomaly";

    public const string ProcessBatch = "events.process.batch";

    /// <summary>Every network event (netmond).</summary>
    public const string AllNetwork = "events.network.#";

    public const string NetworkConnection = "events.network.connection";

    public const string NetworkListener = "events.network.listener";

    public const string NetworkAnomaly = "events.network.anomaly";

    public const string NetworkCoalesced = "events.network.coalesced";

    /// <summary><c>events.filesystem.&lt;kind&gt;</c>: filesystem events (fsmond).</summary>
    public const string FilesystemPrefix = "events.filesystem.";

    /// <summary>Every filesystem event.</summary>
    public const string AllFilesystem = "events.filesystem.#";

    /// <summary>fsmond's change events (one FileEvent each): created, modified, deleted, moved, attributes.</summary>
    public static readonly IReadOnlyList<string> FilesystemChanges =
        [FilesystemPrefix + "created", FilesystemPrefix + "modified", FilesystemPrefix + "deleted", FilesystemPrefix + "moved", FilesystemPrefix + "attributes"];

    /// <summary><c>events.alert.&lt;severity or rule&gt;</c>: alerts raised by detection.</summary>
    public const string AlertPrefix = "events.alert.";

    /// <summary>Every alert.</summary>
    public const string AllAlerts = "events.alert.#";

    /// <summary>The RPC address of a collector: <c>control.collector.&lt;id&gt;</c>.</summary>
    public static string Collector(string collectorId) => CollectorPrefix + collectorId;

    /// <summary>Collector <paramref name="collectorId"/>'s heartbeat topic.</summary>
    public static string Heartbeat(string collectorId) => HeartbeatPrefix + collectorId;

    /// <summary>Collector <paramref name="collectorId"/>'s diagnostics topic.</summary>
    public static string Diagnostics(string collectorId) => DiagnosticsPrefix + collectorId;

    /// <summary>The pattern of every health topic a collector may publish on: <c>control.health.+.&lt;id&gt;</c>.</summary>
    public static string OwnHealth(string collectorId) => "control.health.+." + collectorId;

    /// <summary>The pattern of a collector's own control topics: <c>control.collector.&lt;id&gt;.#</c>.</summary>
    public static string OwnCollectorControl(string collectorId) => CollectorPrefix + collectorId + ".#";
}
