using DaemonEye.Protocol.V1;
using DaemonEye.Topics;

namespace DaemonEye.Gateway.Security;

/// <summary>
/// What one connection may do, decided once at the handshake from its role:
/// <list type="bullet">
/// <item><b>cli</b>: everything but publishing on the topics only the agent and the collectors use:
/// <c>control.collector.#</c> (the agent's calls to collectors and their lifecycle events) and
/// <c>control.health.#</c> (collectors' heartbeats); a message there would be ignored or a forgery.</item>
/// <item><b>client</b>: publish on <c>events.#</c>, subscribe to anything, make RPC calls.</item>
/// <item><b>subscriber</b>: subscribe to anything; no publish, no RPC calls.</item>
/// <item><b>collector</b> <c>&lt;id&gt;</c>: publish on the event domains it declared
/// (<c>publish:</c> capabilities, all under <c>events.#</c>) and on its own health topics
/// <c>control.health.+.&lt;id&gt;</c> (e.g. <c>control.health.heartbeat.&lt;id&gt;</c>); subscribe only
/// within its own control topics (<c>control.collector.&lt;id&gt;.#</c> and
/// <c>control.health.+.&lt;id&gt;</c>); answer the RPC calls addressed to it; make no RPC calls.</item>
/// </list>
/// Publish decisions are cached on the connection's topic entries, so a hot topic costs one byte read.
/// </summary>
internal sealed class AccessPolicy
{
    private readonly string[] _publish;
    private readonly string[] _subscribe;
    private int _deniedOnce;

    private AccessPolicy(Role role, string? collectorId, bool publishAny, bool publishEvents, string[] publish, bool subscribeAny, string[] subscribe, AccessRule? rpcCallDenied, bool operates = false)
    {
        Operates = operates;
        Role = role;
        CollectorId = collectorId;
        PublishesAnything = publishAny;
        PublishesEvents = publishEvents;
        _publish = publish;
        SubscribesAnything = subscribeAny;
        _subscribe = subscribe;
        RpcCallDenied = rpcCallDenied;
    }

    public Role Role { get; }

    public string? CollectorId { get; }

    public bool PublishesAnything { get; }

    private bool PublishesEvents { get; }

    public bool SubscribesAnything { get; }

    /// <summary>The rule that forbids this connection RPC calls, or null when it may make them.</summary>
    public AccessRule? RpcCallDenied { get; }

    /// <summary>
    /// May make the RPC calls that operate collectors (<see cref="RpcOperations"/>: Start, Stop, Restart,
    /// UpdateConfig with settings, ExecuteTask): the cli and client roles of the agent's user and root,
    /// the same callers IPC gives the operator role.
    /// </summary>
    public bool Operates { get; }

    /// <summary>Patterns this connection may publish on besides what its role allows wholesale.</summary>
    public IReadOnlyList<string> PublishPatterns => _publish;

    /// <summary>Patterns this connection's subscriptions must lie within (unless <see cref="SubscribesAnything"/>).</summary>
    public IReadOnlyList<string> SubscribePatterns => _subscribe;

    /// <summary>Topics only the agent and the collectors publish on; the cli role is refused them at once.</summary>
    public static readonly IReadOnlyList<string> AgentTopics = [WellKnownTopics.AllCollectorControl, WellKnownTopics.AllHealth];

    public static AccessPolicy Cli(bool operates = true) => new(Role.Cli, null, false, true, [], true, [], null, operates);

    public static AccessPolicy Client(bool operates = true) => new(Role.Client, null, false, true, [], true, [], null, operates);

    public static AccessPolicy Subscriber() => new(Role.Subscriber, null, false, false, [], true, [], AccessRule.SubscriberRpcCall);

    /// <param name="id">the collector's id</param>
    /// <param name="declared">its granted publish patterns</param>
    /// <param name="caller">listed in <c>security.collector_callers</c>: may make RPC calls as an operator (lifecycle included); else none</param>
    public static AccessPolicy Collector(string id, IReadOnlyList<string> declared, bool caller = false) => new(
        Role.Collector, id, false, false,
        [.. declared, OwnHealthTopics(id)],
        false,
        [WellKnownTopics.OwnCollectorControl(id), OwnHealthTopics(id)],
        caller ? null : AccessRule.CollectorRpcCall,
        operates: caller);

    /// <summary>A collector's own health topics: <c>control.health.&lt;kind&gt;.&lt;id&gt;</c>.</summary>
    public static string OwnHealthTopics(string collectorId) => WellKnownTopics.OwnHealth(collectorId);

    /// <summary>Null when the connection may publish on <paramref name="entry"/>'s topic, else the rule that forbids it.</summary>
    public AccessRule? CheckPublish(TopicEntry entry)
    {
        if (PublishesAnything)
        {
            return null;
        }

        if (entry.PublishVerdict == TopicEntry.VerdictUnknown)
        {
            entry.PublishVerdict = DecidePublish(entry.Topic) is null ? TopicEntry.VerdictAllowed : TopicEntry.VerdictDenied;
        }

        return entry.PublishVerdict == TopicEntry.VerdictAllowed ? null : DecidePublish(entry.Topic);
    }

    /// <summary>Null when the connection may publish on <paramref name="topic"/>, else the rule that forbids it.</summary>
    public AccessRule? DecidePublish(string topic)
    {
        if (PublishesAnything)
        {
            return null;
        }

        switch (Role)
        {
            case Role.Subscriber:
                return AccessRule.SubscriberPublish;
            case Role.Client:
                return PublishesEvents && TopicRules.Matches(WellKnownTopics.AllEvents, topic) ? null : AccessRule.ClientPublishControl;
            case Role.Cli:
                return AgentTopics.Any(pattern => TopicRules.Matches(pattern, topic)) ? AccessRule.CliPublishAgentTopic : null;
        }

        foreach (var pattern in _publish)
        {
            if (TopicRules.Matches(pattern, topic))
            {
                return null;
            }
        }

        return AccessRule.CollectorPublish;
    }

    /// <summary>Null when the connection may subscribe to <paramref name="pattern"/> (valid), else the rule that forbids it.</summary>
    public AccessRule? CheckSubscribe(string pattern)
    {
        if (SubscribesAnything)
        {
            return null;
        }

        foreach (var allowed in _subscribe)
        {
            if (TopicRules.Covers(allowed, pattern))
            {
                return null;
            }
        }

        return AccessRule.CollectorSubscribe;
    }

    /// <summary>What the rule allows, for the error message that names it.</summary>
    public string Explain(AccessRule rule) => rule switch
    {
        AccessRule.SubscriberPublish => "the subscriber role is read-only: it may subscribe, not publish",
        AccessRule.SubscriberRpcCall => "the subscriber role is read-only: it may not make RPC calls",
        AccessRule.ClientPublishControl => "the client role may publish only on events.#; control topics belong to the agent, the cli role and each collector's own health topics",
        AccessRule.CliPublishAgentTopic => $"{string.Join(" and ", AgentTopics)} belong to the agent and the collectors (calls, lifecycle events, heartbeats); to act on a collector use `daemoneye-cli collectors start|stop|restart <id>`",
        AccessRule.CollectorPublish => $"collector '{CollectorId}' may publish only on its declared event domains and its own health topics: {string.Join(", ", _publish)}",
        AccessRule.CollectorSubscribe => $"collector '{CollectorId}' may subscribe only within its own control topics: {string.Join(", ", _subscribe)}",
        AccessRule.CollectorRpcCall => $"collector '{CollectorId}' answers RPC calls addressed to control.collector.{CollectorId}; it may not make calls (unless listed in security.collector_callers)",
        AccessRule.RpcOperate => $"the {Role.ToString().ToLowerInvariant()} role of a uid other than the agent's and root may only read collectors over RPC ({RpcOperations.ReaderMay}); {RpcOperations.OperatorOnly} need the operator: the agent's user or root, as on IPC",
        AccessRule.RpcAnswer => Role == Role.Collector
            ? $"collector '{CollectorId}' may answer only the calls addressed to it"
            : "only the collector a call was addressed to may answer it",
        _ => AccessRules.Name(rule),
    };

    /// <summary>True the first time <paramref name="rule"/> denies something on this connection (for log levels).</summary>
    public bool FirstDenial(AccessRule rule)
    {
        var bit = 1 << (int)rule;
        return (Interlocked.Or(ref _deniedOnce, bit) & bit) == 0;
    }
}
