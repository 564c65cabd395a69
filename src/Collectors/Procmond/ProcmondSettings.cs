using System.Globalization;

namespace DaemonEye.Collectors.Procmond;

/// <summary>
/// procmond's settings. They come from its command line (the <c>arguments</c> of its entry in the
/// agent's <c>collectors</c> list: <c>--scan-interval-ms 1000</c> or <c>--scan-interval-ms=1000</c>)
/// and may be changed while it runs with the UpdateConfig RPC (keys <c>scan_interval_ms</c>, ...).
/// Every bad key or value is reported together, naming what is allowed.
/// </summary>
internal sealed class ProcmondSettings
{
    private static readonly Setting[] All =
    [
        new("scan_interval_ms", "how often /proc is scanned", 50, 3_600_000, (s, v) => s.ScanInterval = TimeSpan.FromMilliseconds(v), s => s.ScanInterval.TotalMilliseconds),
        new("cpu_threshold_percent", "CPU change (percent of one core) that publishes metadata", 0.1, 100_000, (s, v) => s.CpuThresholdPercent = v, s => s.CpuThresholdPercent),
        new("rss_threshold_percent", "RSS change (percent of the last published RSS) that publishes metadata", 0.1, 100_000, (s, v) => s.RssThresholdPercent = v, s => s.RssThresholdPercent),
        new("rss_threshold_min_bytes", "smallest RSS change that publishes metadata", 0, 1L << 40, (s, v) => s.RssThresholdMinBytes = (long)v, s => s.RssThresholdMinBytes),
        new("threads_threshold", "thread-count change that publishes metadata", 1, 1_000_000, (s, v) => s.ThreadsThreshold = (int)v, s => s.ThreadsThreshold),
        new("hash_queue_capacity", "executables waiting to be hashed before further requests are deferred", 1, 1_000_000, (s, v) => s.HashQueueCapacity = (int)v, s => s.HashQueueCapacity),
        new("hash_cache_entries", "hashes kept, by device, inode, size and mtime", 16, 10_000_000, (s, v) => s.HashCacheEntries = (int)v, s => s.HashCacheEntries),
        new("hash_max_file_bytes", "executables larger than this are not hashed", 0, 1L << 40, (s, v) => s.HashMaxFileBytes = (long)v, s => s.HashMaxFileBytes),
        new("max_command_line_bytes", "longest command line read; longer ones are cut", 256, 1 << 20, (s, v) => s.MaxCommandLineBytes = (int)v, s => s.MaxCommandLineBytes),
        new("connector", "1: take process events from the kernel's proc connector (root), scanning only to reconcile; 0: poll /proc only", 0, 1, (s, v) => s.UseConnector = v >= 1, s => s.UseConnector ? 1 : 0),
        new("connector_receive_buffer_bytes", "the kernel's queue of process events for procmond (SO_RCVBUF); an overflow is counted and reconciled", 4096, 1 << 30, (s, v) => s.ConnectorReceiveBufferBytes = (int)v, s => s.ConnectorReceiveBufferBytes),
        new("event_queue_capacity", "kernel events waiting to be applied; beyond it they are coalesced into a reconciliation scan (counted)", 16, 10_000_000, (s, v) => s.EventQueueCapacity = (int)v, s => s.EventQueueCapacity),
        .. AnomalyChecks.All.Select(c => new Setting("anomaly_" + c, $"1: run the {c} anomaly check; 0: off", 0, 1, (s, v) => s.SetAnomaly(c, v >= 1), s => s.AnomalyEnabled(c) ? 1 : 0)),
        new("max_batch_part_bytes", "largest events.process.batch message and task result; bigger snapshots are split (batch) or lose their command lines (task)", 4096, 64 << 20, (s, v) => s.MaxBatchPartBytes = (int)v, s => s.MaxBatchPartBytes),
    ];

    /// <summary>Settings UpdateConfig may not change (fixed at start: the queue and cache are sized once).</summary>
    private static readonly HashSet<string> StartOnly = ["hash_queue_capacity", "hash_cache_entries", "connector", "connector_receive_buffer_bytes", "event_queue_capacity"];

    private readonly HashSet<string> _disabledAnomalies = [];

    public bool UseConnector { get; set; } = true;

    public int ConnectorReceiveBufferBytes { get; set; } = 4 << 20;

    public int EventQueueCapacity { get; set; } = 65_536;

    /// <summary>Executables (or directory prefixes ending in '/') a check does not report.</summary>
    public IReadOnlyList<(string Check, string Path)> AnomalyAllow { get; private set; } = [];

    public bool AnomalyEnabled(string check) => !_disabledAnomalies.Contains(check);

    private void SetAnomaly(string check, bool on)
    {
        if (on)
        {
            _disabledAnomalies.Remove(check);
        }
        else
        {
            _disabledAnomalies.Add(check);
        }
    }

    /// <summary>anomaly_allow: "check=/path,check=/dir/,..." (empty: none).</summary>
    private static List<(string, string)>? ParseAllow(string text, List<string> errors)
    {
        var result = new List<(string, string)>();
        foreach (var entry in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var eq = entry.IndexOf('=', StringComparison.Ordinal);
            var check = eq < 0 ? entry : entry[..eq];
            var path = eq < 0 ? string.Empty : entry[(eq + 1)..];
            if (!AnomalyChecks.All.Contains(check) || !path.StartsWith('/'))
            {
                errors.Add($"anomaly_allow entry '{entry}'; allowed: <check>=<absolute executable path, or directory ending in '/'>, checks: {string.Join(", ", AnomalyChecks.All)}");
                return null;
            }

            result.Add((check, path));
        }

        return result;
    }

    public TimeSpan ScanInterval { get; set; } = TimeSpan.FromSeconds(1);

    public double CpuThresholdPercent { get; set; } = 5;

    public double RssThresholdPercent { get; set; } = 10;

    public long RssThresholdMinBytes { get; set; } = 1 << 20;

    public int ThreadsThreshold { get; set; } = 4;

    public int HashQueueCapacity { get; set; } = 256;

    public int HashCacheEntries { get; set; } = 4096;

    public long HashMaxFileBytes { get; set; } = 256L << 20;

    public int MaxCommandLineBytes { get; set; } = 8192;

    public int MaxBatchPartBytes { get; set; } = 512 * 1024;

    public static string Usage => "procmond [--<setting> VALUE]...\nsettings:\n" + string.Join('\n', All.Select(s =>
        string.Create(CultureInfo.InvariantCulture, $"  --{s.Key.Replace('_', '-')}  {s.Description} ({s.Min} to {s.Max}; default {s.Get(new ProcmondSettings())})")))
        + "\n  --anomaly-allow  executables an anomaly check does not report: <check>=<path or directory/>,... (default none)";

    /// <summary>Parses procmond's command line; returns every problem found.</summary>
    public static ProcmondSettings Parse(IReadOnlyList<string> args, List<string> errors)
    {
        var settings = new ProcmondSettings();
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

    /// <summary>Applies key/value pairs (UpdateConfig keys); nothing changes unless all are valid.</summary>
    public void Apply(IEnumerable<KeyValuePair<string, string>> pairs, List<string> errors, bool atStart)
    {
        var before = errors.Count;
        var changes = new List<(Setting Setting, double Value)>();
        List<(string, string)>? allow = null;
        foreach (var (key, text) in pairs)
        {
            if (key == "anomaly_allow")
            {
                allow = ParseAllow(text, errors) ?? allow;
                continue;
            }

            var setting = All.FirstOrDefault(s => s.Key == key);
            if (setting is null)
            {
                errors.Add($"unknown setting '{key}'; known: {string.Join(", ", All.Select(s => s.Key))}");
                continue;
            }

            if (!atStart && StartOnly.Contains(key))
            {
                errors.Add($"{key} is fixed when procmond starts; change it in the collector's arguments and restart it");
                continue;
            }

            if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || double.IsNaN(value) || value < setting.Min || value > setting.Max)
            {
                errors.Add(string.Create(CultureInfo.InvariantCulture, $"{key} is '{text}'; allowed: a number from {setting.Min} to {setting.Max} ({setting.Description})"));
                continue;
            }

            changes.Add((setting, value));
        }

        if (errors.Count == before)
        {
            foreach (var (setting, value) in changes)
            {
                setting.Set(this, value);
            }

            if (allow is not null)
            {
                AnomalyAllow = allow;
            }
        }
    }

    /// <summary>The effective settings, for the HealthCheck details.</summary>
    public IEnumerable<KeyValuePair<string, string>> Describe() =>
        All.Select(s => new KeyValuePair<string, string>(s.Key, s.Get(this).ToString(CultureInfo.InvariantCulture)))
            .Append(new("anomaly_allow", string.Join(',', AnomalyAllow.Select(a => $"{a.Check}={a.Path}"))));

    private sealed record Setting(string Key, string Description, double Min, double Max, Action<ProcmondSettings, double> Set, Func<ProcmondSettings, double> Get);
}
