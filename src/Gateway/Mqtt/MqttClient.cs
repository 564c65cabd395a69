using System.Net;
using DaemonEye.Gateway.Durability;
using DaemonEye.Gateway.Security;
using DaemonEye.Topics;

namespace DaemonEye.Gateway.Mqtt;

/// <summary>
/// The bridge's view of one MQTT client id: who it is (identity, policy), the connection that holds it
/// now, and what its session holds on the bus: the bus pattern of each MQTT filter it subscribed
/// (<see cref="Live"/>) and the durable consumers of its persistent QoS 1 filters (<see cref="Durable"/>).
/// Lives as long as MQTTnet's session for the id (a clean session ends at disconnect).
/// </summary>
internal sealed class MqttClient(string clientId, string identity)
{
    public string ClientId { get; } = clientId;

    /// <summary>Who may hold this client id's session: <c>uid:&lt;uid&gt;</c> (Unix socket) or <c>user:&lt;name&gt;</c> (TCP).</summary>
    public string Identity { get; } = identity;

    public object Gate { get; } = new();

    /// <summary>MQTT filter to bus pattern, for every filter the session holds through the bridge's live subscriptions.</summary>
    public Dictionary<string, string> Live { get; } = new(StringComparer.Ordinal);

    /// <summary>MQTT filter to the durable session serving it (persistent sessions, QoS 1, durable topics).</summary>
    public Dictionary<string, MqttDurableSession> Durable { get; } = new(StringComparer.Ordinal);

    // Set at each CONNECT (validation) for the connection that now holds the id.
    public AccessPolicy Policy { get; set; } = AccessPolicy.Subscriber();

    public PeerCredentials? Peer { get; set; }

    public EndPoint? EndPoint { get; set; }

    /// <summary>The connection's number: negative, so it never equals a bus connection's id (logs, durable consumer holders).</summary>
    public long Number { get; set; }

    public bool Persistent { get; set; }

    /// <summary>MQTT 5: a refused PUBLISH at QoS 1 is answered with a reason code; MQTT 3.1.1 has none, so the connection is closed.</summary>
    public bool V5 { get; set; }

    public PublishAccumulator? Publishes { get; set; }

    // MQTT topic name to bus topic, for topics this client has published on: mapped and validated once.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, string> _busTopics = new(StringComparer.Ordinal);

    /// <summary>Topics a client's mapping cache holds at most; past it the cache starts over.</summary>
    internal const int MaxCachedTopics = 1024;

    /// <summary>The bus topic for MQTT topic name <paramref name="mqtt"/> (<see cref="MqttTopics.ToBusTopic"/>), cached per client.</summary>
    public string? BusTopic(string? mqtt, out string? error)
    {
        if (mqtt is not null && _busTopics.TryGetValue(mqtt, out var known))
        {
            error = null;
            return known;
        }

        var bus = MqttTopics.ToBusTopic(mqtt, out error);
        if (bus is not null)
        {
            if (_busTopics.Count >= MaxCachedTopics)
            {
                _busTopics.Clear();
            }

            _busTopics[mqtt!] = bus;
        }

        return bus;
    }

    /// <summary>True when a live message on <paramref name="busTopic"/> must not go to this client: a durable session delivers it.</summary>
    public bool CoversDurably(string busTopic)
    {
        lock (Gate)
        {
            foreach (var session in Durable.Values)
            {
                if (TopicRules.Matches(session.Pattern, busTopic))
                {
                    return true;
                }
            }
        }

        return false;
    }

    /// <summary>Stops every durable session's pump and releases its consumer (disconnect); the sessions stay listed for a resume.</summary>
    public async Task StopDurableAsync(DurableLog? log)
    {
        List<MqttDurableSession> sessions;
        lock (Gate)
        {
            sessions = [.. Durable.Values];
        }

        foreach (var session in sessions)
        {
            await session.StopAsync();
            log?.Detach(session.Consumer, session.Holder);
        }
    }

    /// <summary>The durable consumer name for <paramref name="filter"/>: identity, client id and a hash of the filter (1-128 of [A-Za-z0-9_.-]).</summary>
    public static string ConsumerName(string identity, string clientId, string filter)
    {
        var safe = new string([.. clientId.Take(40).Select(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' ? c : '_')]);
        var hash = System.IO.Hashing.XxHash32.HashToUInt32(System.Text.Encoding.UTF8.GetBytes($"{clientId}\n{filter}"));
        var who = new string([.. identity.Take(40).Select(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' ? c : '-')]);
        return $"mqtt.{who}.{safe}.{hash:x8}";
    }
}
