using System.Globalization;
using Microsoft.Extensions.Configuration;

namespace DaemonEye.Coordination;

/// <summary>The <c>coordination</c> section: task distribution and detection rules.</summary>
public sealed class CoordinationOptions
{
    public const string SectionName = "coordination";

    /// <summary>Timeout of a task that sets none, in seconds.</summary>
    [ConfigurationKeyName("default_task_timeout_seconds")]
    public double DefaultTaskTimeoutSeconds { get; set; } = 30;

    /// <summary>Most task assignments waiting for a free instance; beyond it a new task fails at once.</summary>
    [ConfigurationKeyName("max_queued_tasks")]
    public int MaxQueuedTasks { get; set; } = 1000;

    /// <summary>Capacity of an instance that declares none in its Hello (no <c>capacity:&lt;n&gt;</c>).</summary>
    [ConfigurationKeyName("default_capacity")]
    public int DefaultCapacity { get; set; } = 1;

    [ConfigurationKeyName("rules")]
    public RulesOptions Rules { get; set; } = new();

    public TimeSpan DefaultTaskTimeout => TimeSpan.FromSeconds(DefaultTaskTimeoutSeconds);

    public IEnumerable<string> Validate()
    {
        if (double.IsNaN(DefaultTaskTimeoutSeconds) || DefaultTaskTimeoutSeconds is < 0.01 or > 86400)
        {
            yield return string.Create(CultureInfo.InvariantCulture, $"coordination.default_task_timeout_seconds is {DefaultTaskTimeoutSeconds}; allowed: 0.01 to 86400 seconds");
        }

        if (MaxQueuedTasks is < 1 or > 1_000_000)
        {
            yield return $"coordination.max_queued_tasks is {MaxQueuedTasks}; allowed: 1 to 1000000";
        }

        if (DefaultCapacity is < 1 or > 10_000)
        {
            yield return $"coordination.default_capacity is {DefaultCapacity}; allowed: 1 to 10000";
        }

        foreach (var error in Rules.Validate())
        {
            yield return error;
        }
    }
}

/// <summary>The <c>coordination.rules</c> section: SQL detection rules over process snapshots.</summary>
public sealed class RulesOptions
{
    /// <summary>Directory of rule files (*.yaml, *.yml); relative to the agent's working directory.</summary>
    [ConfigurationKeyName("directory")]
    public string Directory { get; set; } = "config/rules";

    /// <summary>How often every rule runs over a fresh snapshot; 0 = only on demand (daemoneye-cli rules run).</summary>
    [ConfigurationKeyName("interval_seconds")]
    public double IntervalSeconds { get; set; } = 60;

    /// <summary>Longest one rule may run over one snapshot before it is interrupted, in milliseconds.</summary>
    [ConfigurationKeyName("time_limit_ms")]
    public int TimeLimitMs { get; set; } = 1000;

    /// <summary>How long the agent waits for the process.snapshot task a rule run needs.</summary>
    [ConfigurationKeyName("snapshot_timeout_seconds")]
    public double SnapshotTimeoutSeconds { get; set; } = 10;

    /// <summary>Alerts one rule may raise in one run; further matches are counted and logged, not published.</summary>
    [ConfigurationKeyName("max_alerts_per_rule")]
    public int MaxAlertsPerRule { get; set; } = 100;

    /// <summary>
    /// How long events stay in the rule tables that hold events (<c>file_events</c>): only events
    /// newer than this, at evaluation, are loaded; the sliding window per event table.
    /// </summary>
    [ConfigurationKeyName("event_retention_seconds")]
    public double EventRetentionSeconds { get; set; } = 300;

    /// <summary>
    /// A rule's alert for one key (the rule's <c>key</c> columns' values, by default the whole row) is
    /// published at most once per this many seconds; the ones in between are counted and the count is
    /// carried by the next alert (<c>suppressed_before</c>). 0: every match is published.
    /// </summary>
    [ConfigurationKeyName("suppression_seconds")]
    public double SuppressionSeconds { get; set; } = 3600;

    /// <summary>
    /// The sliding windows event rules read (<c>kind: event</c>): one per event table, each with its
    /// retention (age and row cap). What ages out or overflows is counted (rules list, metrics).
    /// </summary>
    [ConfigurationKeyName("event_windows")]
    public EventWindowsOptions EventWindows { get; set; } = new();

    /// <summary>
    /// After an event batch arrives, event rules wait at most this long for more batches before they
    /// run (a burst is evaluated once); 0: they run as soon as the queued batches are applied.
    /// </summary>
    [ConfigurationKeyName("event_debounce_ms")]
    public int EventDebounceMs { get; set; } = 5;

    /// <summary>Event batches queued between the bus and the event windows; past it a batch is dropped and counted.</summary>
    [ConfigurationKeyName("event_queue_batches")]
    public int EventQueueBatches { get; set; } = 4096;

    /// <summary>
    /// Named lists of SQLite GLOB patterns rules read from the <c>watch_lists(list, pattern)</c> table.
    /// A list configured here replaces the default list of that name; the others keep their default
    /// (<see cref="DefaultWatchLists"/>).
    /// </summary>
    [ConfigurationKeyName("watch_lists")]
    public Dictionary<string, List<string>> WatchLists { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>The watch lists the shipped rules read, as shipped.</summary>
    public static IReadOnlyDictionary<string, IReadOnlyList<string>> DefaultWatchLists { get; } = new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal)
    {
        ["sensitive_files"] = ["/etc/passwd", "/etc/shadow", "/etc/sudoers", "/etc/sudoers.d/*", "/root/.ssh/authorized_keys", "/home/*/.ssh/authorized_keys"],
        ["system_binaries"] = ["/usr/bin/*", "/usr/sbin/*", "/bin/*", "/sbin/*", "/usr/local/bin/*", "/usr/local/sbin/*"],
        ["volatile_directories"] = ["/tmp/*", "/var/tmp/*", "/dev/shm/*"],
        ["shells"] = ["bash", "sh", "dash", "zsh", "ksh", "fish", "busybox"],
        ["listener_allow"] = ["sshd", "systemd", "systemd-resolve", "chronyd", "dhclient", "avahi-daemon", "cupsd"],
        ["package_managers"] = ["/usr/bin/dpkg", "/usr/bin/apt*", "/usr/bin/rpm", "/usr/bin/dnf*", "/usr/bin/yum", "/usr/bin/unattended-upgrade*", "/usr/lib/apt/*"],
    };

    /// <summary>The defaults with every configured list in place of the default of its name.</summary>
    public IReadOnlyDictionary<string, IReadOnlyList<string>> EffectiveWatchLists
    {
        get
        {
            var lists = new Dictionary<string, IReadOnlyList<string>>(DefaultWatchLists, StringComparer.Ordinal);
            foreach (var (name, patterns) in WatchLists)
            {
                // Environment variables name keys in upper case (DAEMONEYE_..._WATCH_LISTS__SENSITIVE_FILES__0).
                lists[name.ToLowerInvariant()] = [.. patterns.Where(p => p.Length > 0)];
            }

            return lists;
        }
    }

    /// <summary>The task type whose results fill the process tables.</summary>
    public const string SnapshotTaskType = "process.snapshot";

    public TimeSpan EventRetention => TimeSpan.FromSeconds(EventRetentionSeconds);

    public TimeSpan EventDebounce => TimeSpan.FromMilliseconds(EventDebounceMs);

    public TimeSpan Suppression => TimeSpan.FromSeconds(SuppressionSeconds);

    public TimeSpan Interval => TimeSpan.FromSeconds(IntervalSeconds);

    public TimeSpan TimeLimit => TimeSpan.FromMilliseconds(TimeLimitMs);

    public TimeSpan SnapshotTimeout => TimeSpan.FromSeconds(SnapshotTimeoutSeconds);

    public IEnumerable<string> Validate()
    {
        if (double.IsNaN(IntervalSeconds) || IntervalSeconds < 0 || IntervalSeconds > 86400 || (IntervalSeconds > 0 && IntervalSeconds < 0.1))
        {
            yield return string.Create(CultureInfo.InvariantCulture, $"coordination.rules.interval_seconds is {IntervalSeconds}; allowed: 0 (on demand only) or 0.1 to 86400 seconds");
        }

        if (TimeLimitMs is < 1 or > 600_000)
        {
            yield return $"coordination.rules.time_limit_ms is {TimeLimitMs}; allowed: 1 to 600000";
        }

        if (double.IsNaN(SnapshotTimeoutSeconds) || SnapshotTimeoutSeconds is < 0.01 or > 3600)
        {
            yield return string.Create(CultureInfo.InvariantCulture, $"coordination.rules.snapshot_timeout_seconds is {SnapshotTimeoutSeconds}; allowed: 0.01 to 3600 seconds");
        }

        if (MaxAlertsPerRule is < 1 or > 1_000_000)
        {
            yield return $"coordination.rules.max_alerts_per_rule is {MaxAlertsPerRule}; allowed: 1 to 1000000";
        }

        if (double.IsNaN(EventRetentionSeconds) || EventRetentionSeconds is < 1 or > 86400)
        {
            yield return string.Create(CultureInfo.InvariantCulture, $"coordination.rules.event_retention_seconds is {EventRetentionSeconds}; allowed: 1 to 86400 seconds");
        }

        if (double.IsNaN(SuppressionSeconds) || SuppressionSeconds is < 0 or > 604800)
        {
            yield return string.Create(CultureInfo.InvariantCulture, $"coordination.rules.suppression_seconds is {SuppressionSeconds}; allowed: 0 (off) to 604800 seconds");
        }

        if (EventDebounceMs is < 0 or > 1000)
        {
            yield return $"coordination.rules.event_debounce_ms is {EventDebounceMs}; allowed: 0 to 1000";
        }

        if (EventQueueBatches is < 16 or > 1_000_000)
        {
            yield return $"coordination.rules.event_queue_batches is {EventQueueBatches}; allowed: 16 to 1000000";
        }

        foreach (var (table, window) in EventWindows.All)
        {
            foreach (var error in window.Validate("coordination.rules.event_windows." + table))
            {
                yield return error;
            }
        }

        foreach (var (name, patterns) in WatchLists)
        {
            if (name.Length is 0 or > 64 || !name.All(c => char.IsAsciiLetter(c) || char.IsAsciiDigit(c) || c == '_'))
            {
                yield return $"coordination.rules.watch_lists has a list named '{name}'; allowed names: 1 to 64 characters from a-z, 0-9 and '_' (case does not matter)";
            }

            if (patterns.Any(p => p.Length > 4096))
            {
                yield return $"coordination.rules.watch_lists.{name} has a pattern longer than 4096 characters";
            }
        }
    }
}

/// <summary>The <c>coordination.rules.event_windows</c> section: one window per event table.</summary>
public sealed class EventWindowsOptions
{
    /// <summary>procmond's events.process.lifecycle (started, executed, exited).</summary>
    [ConfigurationKeyName("process_events")]
    public EventWindowOptions ProcessEvents { get; set; } = new();

    /// <summary>netmond's events.network.connection (opened, closed).</summary>
    [ConfigurationKeyName("connection_events")]
    public EventWindowOptions ConnectionEvents { get; set; } = new();

    /// <summary>fsmond's events.filesystem.{created,modified,deleted,moved,attributes}.</summary>
    [ConfigurationKeyName("filesystem_events")]
    public EventWindowOptions FilesystemEvents { get; set; } = new() { MaxRows = 200_000 };

    /// <summary>Table name → its window.</summary>
    public IEnumerable<(string Table, EventWindowOptions Window)> All =>
        [("process_events", ProcessEvents), ("connection_events", ConnectionEvents), ("filesystem_events", FilesystemEvents)];
}

/// <summary>One event table's retention: rows older than <see cref="MaxAgeSeconds"/> go; past <see cref="MaxRows"/> the oldest go.</summary>
public sealed class EventWindowOptions
{
    [ConfigurationKeyName("max_age_seconds")]
    public double MaxAgeSeconds { get; set; } = 300;

    [ConfigurationKeyName("max_rows")]
    public int MaxRows { get; set; } = 100_000;

    public TimeSpan MaxAge => TimeSpan.FromSeconds(MaxAgeSeconds);

    public IEnumerable<string> Validate(string path)
    {
        if (double.IsNaN(MaxAgeSeconds) || MaxAgeSeconds is < 1 or > 86400)
        {
            yield return string.Create(CultureInfo.InvariantCulture, $"{path}.max_age_seconds is {MaxAgeSeconds}; allowed: 1 to 86400 seconds");
        }

        if (MaxRows is < 1 or > 10_000_000)
        {
            yield return $"{path}.max_rows is {MaxRows}; allowed: 1 to 10000000";
        }
    }
}
