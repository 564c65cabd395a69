using System.Globalization;

namespace DaemonEye.Collectors.Fsmond;

/// <summary>
/// fsmond's settings: its command line (<c>--watch "/etc/**,/usr/bin/**"</c> or <c>--watch=...</c>)
/// and, while it runs, the UpdateConfig RPC (keys with <c>_</c>: <c>watch</c>, <c>bulk_threshold</c>).
/// Lists are comma-separated globs (<c>*</c>: within one path segment, <c>**</c>: any depth,
/// <c>?</c>: one character). Every bad key or value is reported together; nothing changes unless
/// all are valid.
/// </summary>
internal sealed class FsmondSettings
{
    public static readonly string[] DefaultWatch =
    [
        "/etc/**", "/usr/bin/**", "/usr/sbin/**", "/bin/**", "/sbin/**", "/usr/local/bin/**", "/usr/local/sbin/**",
        "/usr/lib/**", "/usr/lib64/**", "/lib/**", "/lib64/**", "/usr/local/lib/**",
        "/var/spool/cron/**", "/usr/lib/systemd/system/**", "/lib/systemd/system/**", "/run/systemd/system/**",
        "/root/.ssh/**", "/home/*/.ssh/**", "/root/.config/systemd/**", "/home/*/.config/systemd/**",
        "/root/.bashrc", "/root/.profile", "/home/*/.bashrc", "/home/*/.profile",
    ];

    public static readonly string[] DefaultExecutableWatch = ["/tmp/**", "/var/tmp/**", "/dev/shm/**"];

    public static readonly string[] DefaultExclude = ["/usr/lib/python3*/**/__pycache__/**", "/etc/**/*.dpkg-*", "/etc/ld.so.cache~", "**/*.swp"];

    public static readonly string[] DefaultIntegrity =
    [
        "/usr/bin/**", "/usr/sbin/**", "/bin/**", "/sbin/**", "/usr/local/bin/**", "/usr/local/sbin/**",
        "/etc/passwd", "/etc/shadow", "/etc/group", "/etc/sudoers", "/etc/sudoers.d/**", "/etc/ssh/sshd_config",
        "/etc/ssh/sshd_config.d/**", "/etc/ld.so.preload", "/etc/pam.d/**", "/etc/crontab", "/etc/cron.d/**",
        "/root/.ssh/authorized_keys", "/home/*/.ssh/authorized_keys",
    ];

    private static readonly Setting[] All =
    [
        List("watch", "globs whose changes are published", s => s.Watch, (s, v) => s.Watch = v),
        List("executable_watch", "globs where only executables are published (new executables in temporary directories)", s => s.ExecutableWatch, (s, v) => s.ExecutableWatch = v),
        List("exclude", "globs never published (they win over watch and integrity)", s => s.Exclude, (s, v) => s.Exclude = v),
        List("integrity", "globs of files hashed (SHA-256) before and after each change", s => s.Integrity, (s, v) => s.Integrity = v),
        Text("source", "auto (fanotify, else inotify), fanotify or inotify", ["auto", "fanotify", "inotify"], s => s.Source, (s, v) => s.Source = v, startOnly: true),
        Text("queue", "fanotify queue: bounded (the kernel's max_queued_events; overflow is counted and followed by a rescan) or unlimited", ["bounded", "unlimited"], s => s.Queue, (s, v) => s.Queue = v, startOnly: true),
        Number("bulk_threshold", "files one process may touch within bulk_window_ms before a bulk summary", 1, 10_000_000, s => s.BulkThreshold, (s, v) => s.BulkThreshold = (int)v),
        Number("bulk_window_ms", "window of the bulk count", 100, 3_600_000, s => s.BulkWindow.TotalMilliseconds, (s, v) => s.BulkWindow = TimeSpan.FromMilliseconds(v)),
        Number("bulk_suppress", "1: after the threshold, a process's events are counted in its bulk summary instead of published one by one (integrity roots always published); 0: published", 0, 1, s => s.BulkSuppress ? 1 : 0, (s, v) => s.BulkSuppress = v >= 1),
        Number("max_events_per_second", "file events published per second at most; the rest are counted and reported", 1, 10_000_000, s => s.MaxEventsPerSecond, (s, v) => s.MaxEventsPerSecond = v),
        Number("publish_queue_capacity", "events waiting for the bus; when full, further events are counted as dropped", 16, 10_000_000, s => s.PublishQueueCapacity, (s, v) => s.PublishQueueCapacity = (int)v, startOnly: true),
        Number("recent_events", "events kept for the file.snapshot task", 0, 1_000_000, s => s.RecentEvents, (s, v) => s.RecentEvents = (int)v),
        Number("hash_max_file_bytes", "files larger than this are not hashed (said in the event)", 0, 1L << 40, s => s.HashMaxFileBytes, (s, v) => s.HashMaxFileBytes = (long)v),
        Number("hash_queue_capacity", "files waiting to be hashed; when full, requests are counted and the file is rehashed at the next rescan", 1, 1_000_000, s => s.HashQueueCapacity, (s, v) => s.HashQueueCapacity = (int)v, startOnly: true),
        Number("inotify_max_watches", "directories the inotify fallback watches at most (beyond: counted, logged)", 1, 10_000_000, s => s.InotifyMaxWatches, (s, v) => s.InotifyMaxWatches = (int)v, startOnly: true),
    ];

    public IReadOnlyList<string> Watch { get; set; } = DefaultWatch;

    public IReadOnlyList<string> ExecutableWatch { get; set; } = DefaultExecutableWatch;

    public IReadOnlyList<string> Exclude { get; set; } = DefaultExclude;

    public IReadOnlyList<string> Integrity { get; set; } = DefaultIntegrity;

    public string Source { get; set; } = "auto";

    public string Queue { get; set; } = "bounded";

    public int BulkThreshold { get; set; } = 1000;

    public TimeSpan BulkWindow { get; set; } = TimeSpan.FromSeconds(60);

    public bool BulkSuppress { get; set; } = true;

    public double MaxEventsPerSecond { get; set; } = 5000;

    public int PublishQueueCapacity { get; set; } = 65536;

    public int RecentEvents { get; set; } = 4096;

    public long HashMaxFileBytes { get; set; } = 256L << 20;

    public int HashQueueCapacity { get; set; } = 4096;

    public int InotifyMaxWatches { get; set; } = 65536;

    public static string Usage => "fsmond [--<setting> VALUE]...\nsettings:\n" + string.Join('\n', All.Select(s => $"  --{s.Key.Replace('_', '-')}  {s.Description} (default {s.Get(new FsmondSettings())})"));

    public static FsmondSettings Parse(IReadOnlyList<string> args, List<string> errors)
    {
        var settings = new FsmondSettings();
        var pairs = new List<KeyValuePair<string, string>>();
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            if (!arg.StartsWith("--", StringComparison.Ordinal) || arg.Length == 2)
            {
                errors.Add($"unexpected argument '{arg}'; settings are given as --<setting> VALUE");
                continue;
            }

            var eq = arg.IndexOf('=', StringComparison.Ordinal);
            var key = (eq < 0 ? arg[2..] : arg[2..eq]).Replace('-', '_');
            if (eq >= 0)
            {
                pairs.Add(new(key, arg[(eq + 1)..]));
            }
            else if (i + 1 < args.Count)
            {
                pairs.Add(new(key, args[++i]));
            }
            else
            {
                errors.Add($"--{key.Replace('_', '-')} needs a value");
            }
        }

        settings.Apply(pairs, errors, atStart: true);
        return settings;
    }

    /// <summary>Applies key/value pairs; nothing changes unless all are valid.</summary>
    public void Apply(IEnumerable<KeyValuePair<string, string>> pairs, List<string> errors, bool atStart)
    {
        var before = errors.Count;
        var changes = new List<(Setting Setting, string Value)>();
        foreach (var (key, text) in pairs)
        {
            var setting = All.FirstOrDefault(s => s.Key == key);
            if (setting is null)
            {
                errors.Add($"unknown setting '{key}'; known: {string.Join(", ", All.Select(s => s.Key))}");
            }
            else if (!atStart && setting.StartOnly)
            {
                errors.Add($"{key} is fixed when fsmond starts; change it in the collector's arguments and restart it");
            }
            else if (setting.Validate(text) is { } problem)
            {
                errors.Add($"{key} is '{text}'; {problem} ({setting.Description})");
            }
            else
            {
                changes.Add((setting, text));
            }
        }

        if (errors.Count == before)
        {
            foreach (var (setting, value) in changes)
            {
                setting.Set(this, value);
            }
        }
    }

    public FsmondSettings Clone() => (FsmondSettings)MemberwiseClone();

    public IEnumerable<KeyValuePair<string, string>> Describe() => All.Select(s => new KeyValuePair<string, string>(s.Key, s.Get(this)));

    private static Setting List(string key, string description, Func<FsmondSettings, IReadOnlyList<string>> get, Action<FsmondSettings, IReadOnlyList<string>> set) =>
        new(key, description, text => PathGlob.Problem(SplitList(text)), s => string.Join(',', get(s)), (s, v) => set(s, SplitList(v)), false);

    private static Setting Text(string key, string description, string[] allowed, Func<FsmondSettings, string> get, Action<FsmondSettings, string> set, bool startOnly) =>
        new(key, description, text => allowed.Contains(text) ? null : $"allowed: {string.Join(", ", allowed)}", get, set, startOnly);

    private static Setting Number(string key, string description, double min, double max, Func<FsmondSettings, double> get, Action<FsmondSettings, double> set, bool startOnly = false) =>
        new(key, description,
            text => double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && !double.IsNaN(v) && v >= min && v <= max
                ? null
                : string.Create(CultureInfo.InvariantCulture, $"allowed: a number from {min} to {max}"),
            s => get(s).ToString(CultureInfo.InvariantCulture),
            (s, v) => set(s, double.Parse(v, NumberStyles.Float, CultureInfo.InvariantCulture)),
            startOnly);

    /// <summary>A comma-separated list; empty text is the empty list.</summary>
    public static string[] SplitList(string text) => text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private sealed record Setting(string Key, string Description, Func<string, string?> Validate, Func<FsmondSettings, string> Get, Action<FsmondSettings, string> Set, bool StartOnly);
}
