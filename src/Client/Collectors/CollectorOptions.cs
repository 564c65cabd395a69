using System.Globalization;
using DaemonEye.Networking;
using DaemonEye.Topics;

namespace DaemonEye.Client;

/// <summary>Who a collector is and what it declares. Unset values come from the environment the
/// agent gives the collectors it spawns (<c>DAEMONEYE_COLLECTOR_ID</c>,
/// <c>DAEMONEYE_HEARTBEAT_INTERVAL_MS</c>, <c>DAEMONEYE_SUPERVISOR_PID</c>, <c>DAEMONEYE_REGISTRATION_TOKEN</c>,
/// <c>DAEMONEYE_BROKER__SOCKET_PATH</c>); <c>DAEMONEYE_BUSY_POLL_MICROSECONDS</c> is the operator's own.</summary>
public sealed class CollectorOptions
{
    public const string CollectorIdVariable = "DAEMONEYE_COLLECTOR_ID";
    public const string HeartbeatIntervalVariable = "DAEMONEYE_HEARTBEAT_INTERVAL_MS";
    public const string SupervisorPidVariable = "DAEMONEYE_SUPERVISOR_PID";
    public const string RegistrationTokenVariable = "DAEMONEYE_REGISTRATION_TOKEN";
    public const string BusyPollVariable = "DAEMONEYE_BUSY_POLL_MICROSECONDS";

    // A BusyPollVariable value that is not a number, kept for Validate to name.
    private string? _unreadableBusyPoll;

    /// <summary>The collector id: its Hello client id and its RPC target <c>control.collector.&lt;id&gt;</c>.
    /// <c>DAEMONEYE_COLLECTOR_ID</c> wins when set: an agent-spawned collector must register under the
    /// id the agent's configuration gives it, or the agent never sees it start. The value set here is
    /// the id when the collector runs by hand.</summary>
    public string? CollectorId { get; set; }

    /// <summary>The registration token of a collector started outside the agent (the agent's
    /// <c>security.registration_tokens.&lt;id&gt;</c>). Null: <c>DAEMONEYE_REGISTRATION_TOKEN</c>, else none
    /// (enough for a collector the agent starts itself).</summary>
    public string? RegistrationToken { get; set; }

    /// <summary>Task types it executes; declared in Hello as <c>task:&lt;type&gt;</c>.</summary>
    public IList<string> TaskTypes { get; } = [];

    /// <summary>Topic patterns it publishes on; declared as <c>publish:&lt;pattern&gt;</c>.</summary>
    public IList<string> EventDomains { get; } = [];

    /// <summary>Most tasks it runs at once (declared as <c>capacity:&lt;n&gt;</c>); 0 = unspecified, not declared.</summary>
    public uint Capacity { get; set; }

    /// <summary>How often to publish a Heartbeat. Null: <c>DAEMONEYE_HEARTBEAT_INTERVAL_MS</c>, else 5 s.</summary>
    public TimeSpan? HeartbeatInterval { get; set; }

    /// <summary>
    /// After each bus event, how long the process's socket thread keeps polling (yielding the CPU
    /// between polls) before it sleeps: 0 (the default) to 10 ms; set when the host starts, for every
    /// bus connection of the process. A request that follows an answer within the window is read
    /// without waking a sleeping thread, and reads in the window run on that thread, so code after a
    /// bus read must not block (the host's own never does; handlers run on the thread pool). It costs
    /// CPU while calls flow and nothing when the bus is quiet (docs/benchmarks.md, "Busy polling").
    /// <c>DAEMONEYE_BUSY_POLL_MICROSECONDS</c> wins when set, so the operator can change it or turn
    /// it off (<c>0</c>) in the collector's <c>environment:</c>.
    /// </summary>
    public TimeSpan BusyPoll { get; set; }

    /// <summary>Publish heartbeats at all (a test collector may not).</summary>
    public bool SendHeartbeats { get; set; } = true;

    /// <summary>The supervising agent's pid: when this process's parent is no longer it, the collector
    /// stops. Null: <c>DAEMONEYE_SUPERVISOR_PID</c>; unset there too: no orphan guard.</summary>
    public int? SupervisorPid { get; set; }

    /// <summary>How often the orphan guard checks the parent pid.</summary>
    public TimeSpan OrphanCheckInterval { get; set; } = TimeSpan.FromMilliseconds(250);

    /// <summary>Bus client settings (socket, reconnect, time provider, logging). Its ClientId, Role and
    /// Capabilities are set by the collector host.</summary>
    public BusClientOptions Bus { get; } = new();

    public TimeSpan EffectiveHeartbeatInterval => HeartbeatInterval ?? TimeSpan.FromSeconds(5);

    /// <summary>Takes the collector id from the environment when set there, and fills the other unset values.</summary>
    internal void ApplyEnvironment(Func<string, string?> environment)
    {
        if (environment(CollectorIdVariable) is { Length: > 0 } id)
        {
            CollectorId = id;
        }

        if (RegistrationToken is null && environment(RegistrationTokenVariable) is { Length: > 0 } token)
        {
            RegistrationToken = token;
        }

        if (HeartbeatInterval is null && long.TryParse(environment(HeartbeatIntervalVariable), NumberStyles.Integer, CultureInfo.InvariantCulture, out var ms) && ms > 0)
        {
            HeartbeatInterval = TimeSpan.FromMilliseconds(ms);
        }

        if (SupervisorPid is null && int.TryParse(environment(SupervisorPidVariable), NumberStyles.Integer, CultureInfo.InvariantCulture, out var pid) && pid > 0)
        {
            SupervisorPid = pid;
        }

        if (environment(BusyPollVariable) is { Length: > 0 } busyPoll)
        {
            if (int.TryParse(busyPoll, NumberStyles.None, CultureInfo.InvariantCulture, out var micros))
            {
                BusyPoll = TimeSpan.FromMicroseconds(micros);
            }
            else
            {
                _unreadableBusyPoll = busyPoll;
            }
        }
    }

    /// <summary>The capabilities declared in Hello.</summary>
    public IEnumerable<string> DeclaredCapabilities()
    {
        foreach (var type in TaskTypes)
        {
            yield return "task:" + type;
        }

        foreach (var pattern in EventDomains)
        {
            yield return "publish:" + pattern;
        }

        if (Capacity > 0)
        {
            yield return "capacity:" + Capacity.ToString(CultureInfo.InvariantCulture);
        }
    }

    /// <summary>Every problem, each naming the option, the value and what is allowed.</summary>
    public IEnumerable<string> Validate()
    {
        if (string.IsNullOrEmpty(CollectorId))
        {
            yield return $"CollectorId is not set and {CollectorIdVariable} is empty; a collector needs an id";
        }
        else
        {
            string? problem = null;
            try
            {
                BusClient.RpcTarget(CollectorId);
            }
            catch (ArgumentException e)
            {
                problem = e.Message;
            }

            if (problem is not null)
            {
                yield return $"CollectorId: {problem}";
            }
        }

        foreach (var type in TaskTypes.Where(t => string.IsNullOrWhiteSpace(t) || t.Contains(' ', StringComparison.Ordinal)))
        {
            yield return $"TaskTypes has '{type}'; a task type is a non-empty word without spaces";
        }

        foreach (var pattern in EventDomains)
        {
            var validation = TopicRules.ValidatePattern(pattern);
            if (!validation.IsValid)
            {
                yield return $"EventDomains has '{pattern}', not a valid topic pattern: {validation.Error}";
            }
        }

        if (HeartbeatInterval is { } interval && interval <= TimeSpan.Zero)
        {
            yield return $"HeartbeatInterval is {interval}; it must be positive";
        }

        if (_unreadableBusyPoll is not null)
        {
            yield return $"{BusyPollVariable} is '{_unreadableBusyPoll}'; allowed: 0 (off) to {SocketReactor.MaxBusyPoll.TotalMicroseconds} (microseconds)";
        }
        else if (!SocketReactor.IsValidBusyPoll(BusyPoll))
        {
            yield return $"BusyPoll is {BusyPoll.TotalMicroseconds} µs (from {BusyPollVariable} when that is set); allowed: 0 (off) to {SocketReactor.MaxBusyPoll.TotalMicroseconds} µs";
        }

        if (OrphanCheckInterval <= TimeSpan.Zero)
        {
            yield return $"OrphanCheckInterval is {OrphanCheckInterval}; it must be positive";
        }

        foreach (var problem in Bus.Validate().Where(p => !p.StartsWith("ClientId", StringComparison.Ordinal)))
        {
            yield return "Bus." + problem;
        }
    }
}
