using DaemonEye.Configuration;
using DaemonEye.Gateway.Rpc;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace DaemonEye.Gateway.Collectors;

/// <summary>
/// The one model of the agent's collectors (docs/ARCHITECTURE.md, "One collector model"). For each
/// collector it owns, and is the only place that writes:
/// <list type="bullet">
/// <item><b>presence</b>: which connection holds the id, its pid and uid (the RPC router reports registrations);</item>
/// <item><b>capabilities</b>: what the handshake granted and refused;</item>
/// <item><b>liveness</b>: heartbeats, judged by one rule on one timer (<see cref="EvaluateLiveness"/>):
/// silent for more than one heartbeat interval is Degraded, for three intervals Unhealthy;</item>
/// <item><b>lifecycle</b>: state, pid, reason (the supervisor's runners report transitions);</item>
/// <item><b>restart state</b>: restarts in total and those inside the restart window.</item>
/// </list>
/// Everyone else reads snapshots or observes changes through <see cref="ICollectorPresenceObserver"/>.
/// Plain memory under one lock: every reader is in this process, and the router and the task
/// coordinator must decide synchronously on their own threads.
/// </summary>
public sealed partial class CollectorDirectory : IDisposable
{
    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly ITimer _liveness;
    private volatile ICollectorPresenceObserver[] _observers = [];

    public CollectorDirectory(IOptions<ProcessManagerOptions> processManager, TimeProvider time, ILogger<CollectorDirectory> logger)
        : this(time, processManager.Value.HeartbeatInterval, logger)
    {
    }

    /// <summary>A directory judging heartbeats due every <paramref name="heartbeatInterval"/> on <paramref name="time"/>.</summary>
    public CollectorDirectory(TimeProvider time, TimeSpan heartbeatInterval, ILogger? logger = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(heartbeatInterval, TimeSpan.Zero);
        _time = time;
        _logger = logger ?? NullLogger.Instance;
        HeartbeatInterval = heartbeatInterval;
        _liveness = time.CreateTimer(static self => ((CollectorDirectory)self!).EvaluateLiveness(), this, heartbeatInterval, heartbeatInterval);
    }

    /// <summary>How often collectors send heartbeats (process_manager.heartbeat_interval_seconds).</summary>
    public TimeSpan HeartbeatInterval { get; }

    /// <summary>Adds an observer of presence, liveness and health-check changes.</summary>
    public void Attach(ICollectorPresenceObserver observer)
    {
        lock (_gate)
        {
            _observers = [.. _observers, observer];
        }
    }

    internal ICollectorPresenceObserver[] Observers => _observers;

    /// <summary>
    /// Who executes lifecycle requests (Start, Stop, Restart) and hears of applied configuration
    /// updates: the agent's process manager. Null until it attaches (and in tests without one).
    /// </summary>
    public ICollectorController? Controller { get; private set; }

    /// <summary>Attaches the one <see cref="ICollectorController"/> (the supervisor, when it is built).</summary>
    public void AttachController(ICollectorController controller)
    {
        ArgumentNullException.ThrowIfNull(controller);
        if (Controller is not null && !ReferenceEquals(Controller, controller))
        {
            throw new InvalidOperationException("a collector controller is already attached");
        }

        Controller = controller;
    }

    // ----- presence (written by the RPC router) -----

    /// <summary>A collector registered on the bus: present, healthy, its liveness clock starts now.</summary>
    internal void Connected(CollectorPresence presence)
    {
        lock (_gate)
        {
            var entry = EntryLocked(presence.CollectorId);
            entry.Presence = presence;
            entry.LastSeen = _time.GetUtcNow();
            entry.LastHeartbeat = null;
            entry.Health = CollectorHealthState.Healthy;
            entry.HealthCheck = null; // A new connection is judged afresh: an earlier process's failed check is not its own.
        }

        foreach (var observer in _observers)
        {
            observer.OnCollectorConnected(presence);
        }
    }

    /// <summary>The connection holding <paramref name="collectorId"/> closed.</summary>
    internal void Disconnected(string collectorId, long connectionId)
    {
        lock (_gate)
        {
            if (_entries.TryGetValue(collectorId, out var entry) && entry.Presence?.ConnectionId == connectionId)
            {
                entry.Presence = null;
                entry.Health = CollectorHealthState.Unknown;
                if (!entry.Supervised && entry.Lifecycle is null)
                {
                    _entries.Remove(collectorId);
                }
            }
        }

        foreach (var observer in _observers)
        {
            observer.OnCollectorDisconnected(collectorId, connectionId);
        }
    }

    /// <summary>The collector published on its heartbeat topic. Never blocks for long (one lock).</summary>
    internal void Heartbeat(string collectorId)
    {
        CollectorHealthState before;
        lock (_gate)
        {
            if (!_entries.TryGetValue(collectorId, out var entry) || entry.Presence is null)
            {
                return;
            }

            var now = _time.GetUtcNow();
            entry.LastHeartbeat = now;
            entry.LastSeen = now;
            before = entry.Health;
            if (before == CollectorHealthState.Healthy)
            {
                return;
            }

            entry.Health = CollectorHealthState.Healthy;
        }

        LogLiveness(_logger, collectorId, before, CollectorHealthState.Healthy, 0);
        Notify(collectorId, before, CollectorHealthState.Healthy);
    }

    /// <summary>
    /// The one liveness rule, run by the one timer every heartbeat interval (tests call it after
    /// moving their clock): a present collector silent for more than one interval is Degraded, for
    /// three intervals or more Unhealthy; a heartbeat makes it Healthy again at once.
    /// </summary>
    internal void EvaluateLiveness()
    {
        var now = _time.GetUtcNow();
        List<(string Id, CollectorHealthState Before, CollectorHealthState After, double Silent)>? changes = null;
        lock (_gate)
        {
            foreach (var (id, entry) in _entries)
            {
                if (entry.Presence is null)
                {
                    continue;
                }

                var silent = now - entry.LastSeen;
                var health = Judge(silent, HeartbeatInterval);
                if (health != entry.Health)
                {
                    (changes ??= []).Add((id, entry.Health, health, silent.TotalSeconds));
                    entry.Health = health;
                }
            }
        }

        if (changes is null)
        {
            return;
        }

        foreach (var (id, before, after, silent) in changes)
        {
            LogLiveness(_logger, id, before, after, silent);
            Notify(id, before, after);
        }
    }

    /// <summary>The rule itself: Degraded after one silent interval, Unhealthy after three.</summary>
    public static CollectorHealthState Judge(TimeSpan silent, TimeSpan interval) =>
        silent >= interval * 3 ? CollectorHealthState.Unhealthy
        : silent > interval ? CollectorHealthState.Degraded
        : CollectorHealthState.Healthy;

    private void Notify(string id, CollectorHealthState before, CollectorHealthState after)
    {
        foreach (var observer in _observers)
        {
            observer.OnCollectorLivenessChanged(id, before, after);
        }
    }

    /// <summary>Tells the observers how the agent's HealthCheck of <paramref name="collectorId"/> went (the supervisor calls this).</summary>
    public void ReportHealthCheck(string collectorId, bool healthy, string detail)
    {
        lock (_gate)
        {
            if (_entries.TryGetValue(collectorId, out var entry))
            {
                entry.HealthCheck = healthy ? null : detail;
            }
        }

        foreach (var observer in _observers)
        {
            observer.OnCollectorHealthChecked(collectorId, healthy, detail);
        }
    }

    /// <summary>Records what the handshake granted and refused a collector (before it registers).</summary>
    internal void Negotiated(string collectorId, IReadOnlyList<string> granted, IReadOnlyList<RefusedCapability> refused)
    {
        lock (_gate)
        {
            var entry = EntryLocked(collectorId);
            entry.Granted = [.. granted];
            entry.Refused = [.. refused];
        }
    }

    // ----- lifecycle and restart state (written by the supervisor) -----

    /// <summary>Declares a collector the agent supervises (from the configuration), or updates its definition.</summary>
    public void Configure(string collectorId, bool enabled, string executable)
    {
        lock (_gate)
        {
            var entry = EntryLocked(collectorId);
            entry.Supervised = true;
            entry.Enabled = enabled;
            entry.Executable = executable;
        }
    }

    /// <summary>Forgets a collector removed from the configuration (it has been stopped).</summary>
    public void Remove(string collectorId)
    {
        lock (_gate)
        {
            if (_entries.TryGetValue(collectorId, out var entry))
            {
                entry.Supervised = false;
                entry.Lifecycle = null;
                if (entry.Presence is null)
                {
                    _entries.Remove(collectorId);
                }
            }
        }
    }

    /// <summary>Moves a collector to <paramref name="state"/>; returns the snapshots before and after.</summary>
    public CollectorTransition Transition(string collectorId, CollectorLifecycle state, int pid, string reason)
    {
        CollectorSnapshot before, after;
        lock (_gate)
        {
            var entry = EntryLocked(collectorId);
            before = SnapshotLocked(collectorId, entry);
            entry.Lifecycle = state;
            entry.Pid = pid;
            entry.Reason = reason;
            entry.StateSince = _time.GetUtcNow();
            after = SnapshotLocked(collectorId, entry);
        }

        if (before.State != state)
        {
            // A collector that gave up (Failed) is an error: `journalctl -p err` shows it.
            LogTransition(_logger, state == CollectorLifecycle.Failed ? LogLevel.Error : LogLevel.Information, collectorId, before.State, state, pid, reason);
        }

        return new CollectorTransition(before, after);
    }

    /// <summary>
    /// Decides whether an unexpected exit may be restarted under the restart policy: true (and counted)
    /// when fewer than <paramref name="maxAttempts"/> restarts fall within <paramref name="window"/>.
    /// </summary>
    public bool TryCountRestart(string collectorId, int maxAttempts, TimeSpan window, out int attempt, out int total)
    {
        lock (_gate)
        {
            var entry = EntryLocked(collectorId);
            var now = _time.GetUtcNow();
            while (entry.RecentRestarts.Count > 0 && now - entry.RecentRestarts.Peek() > window)
            {
                entry.RecentRestarts.Dequeue(); // A collector that ran stably has its count reset.
            }

            attempt = entry.RecentRestarts.Count;
            total = entry.Restarts;
            if (attempt >= maxAttempts)
            {
                return false;
            }

            entry.RecentRestarts.Enqueue(now);
            entry.Restarts++;
            attempt = entry.RecentRestarts.Count;
            total = entry.Restarts;
            return true;
        }
    }

    /// <summary>An operator's start: the restart window begins afresh (the total stays).</summary>
    public void ResetRestartWindow(string collectorId)
    {
        lock (_gate)
        {
            if (_entries.TryGetValue(collectorId, out var entry))
            {
                entry.RecentRestarts.Clear();
            }
        }
    }

    // ----- reads -----

    public CollectorSnapshot? Find(string collectorId)
    {
        lock (_gate)
        {
            return _entries.TryGetValue(collectorId, out var entry) ? SnapshotLocked(collectorId, entry) : null;
        }
    }

    /// <summary>Every collector known: configured, or connected without being configured; by id.</summary>
    public IReadOnlyList<CollectorSnapshot> List()
    {
        lock (_gate)
        {
            return [.. _entries.Where(e => e.Value.Supervised || e.Value.Presence is not null)
                .OrderBy(e => e.Key, StringComparer.Ordinal)
                .Select(e => SnapshotLocked(e.Key, e.Value))];
        }
    }

    private Entry EntryLocked(string id)
    {
        if (!_entries.TryGetValue(id, out var entry))
        {
            entry = new Entry { StateSince = _time.GetUtcNow() };
            _entries[id] = entry;
        }

        return entry;
    }

    private static CollectorSnapshot SnapshotLocked(string id, Entry entry)
    {
        // A collector nobody supervises is Running while it is connected, Stopped after.
        var state = entry.Lifecycle ?? (entry.Presence is null ? CollectorLifecycle.Stopped : CollectorLifecycle.Running);
        var pid = entry.Lifecycle is null ? entry.Presence?.Pid ?? 0 : entry.Pid;
        return new CollectorSnapshot(
            id, state, entry.Presence is null ? CollectorHealthState.Unknown : entry.Health, pid, entry.Restarts,
            entry.LastHeartbeat, entry.Granted.Length > 0 || entry.Presence is null ? entry.Granted : [.. entry.Presence.Capabilities],
            entry.Refused, entry.Reason, entry.StateSince, entry.Supervised, entry.Enabled, entry.Executable, entry.Presence, entry.HealthCheck);
    }

    public void Dispose() => _liveness.Dispose();

    private sealed class Entry
    {
        public CollectorPresence? Presence { get; set; }

        public DateTimeOffset LastSeen { get; set; }

        public DateTimeOffset? LastHeartbeat { get; set; }

        public CollectorHealthState Health { get; set; }

        public string? HealthCheck { get; set; }

        public string[] Granted { get; set; } = [];

        public RefusedCapability[] Refused { get; set; } = [];

        public bool Supervised { get; set; }

        public bool Enabled { get; set; } = true;

        public string Executable { get; set; } = string.Empty;

        public CollectorLifecycle? Lifecycle { get; set; }

        public int Pid { get; set; }

        public string Reason { get; set; } = string.Empty;

        public DateTimeOffset StateSince { get; set; }

        public int Restarts { get; set; }

        public Queue<DateTimeOffset> RecentRestarts { get; } = new();
    }

    [LoggerMessage(EventId = 1200, Message = "Collector {CollectorId}: {From} -> {To} (pid {Pid}): {Reason}")]
    private static partial void LogTransition(ILogger logger, LogLevel level, string collectorId, CollectorLifecycle from, CollectorLifecycle to, int pid, string reason);

    [LoggerMessage(EventId = 1201, Level = LogLevel.Warning, Message = "Collector {CollectorId} liveness {From} -> {To} (silent for {Seconds:0.0} s)")]
    private static partial void LogLiveness(ILogger logger, string collectorId, CollectorHealthState from, CollectorHealthState to, double seconds);
}
