using System.Globalization;
using System.Net;

namespace DaemonEye.Collectors.Netmond;

/// <summary>
/// netmond's settings: its command line (<c>--scan-interval-ms 1000</c> or <c>--scan-interval-ms=1000</c>,
/// the <c>arguments</c> of its entry in the agent's <c>collectors</c> list) and, while it runs, the
/// UpdateConfig RPC (same keys, <c>scan_interval_ms</c>). Every bad key or value is reported
/// together, naming what is allowed; nothing changes unless all are valid.
/// </summary>
internal sealed class NetmondSettings
{
    private static readonly Setting[] All =
    [
        new("scan_interval_ms", "how often the sockets are dumped (connections opened, listeners started and stopped are seen on this beat)", "10 to 3600000", "1000",
            (s, v) => s.ScanInterval = TimeSpan.FromMilliseconds(Number(v, 10, 3_600_000)), s => Text(s.ScanInterval.TotalMilliseconds)),
        new("protocols", "transports observed", "tcp, udp or tcp,udp", "tcp,udp",
            (s, v) => (s.Tcp, s.Udp) = Protocols(v), s => string.Join(',', new[] { s.Tcp ? "tcp" : null, s.Udp ? "udp" : null }.OfType<string>())),
        new("ignore_ports", "ports (local or remote) whose sockets publish no events", "a comma-separated list of 1 to 65535, or empty", "",
            (s, v) => s.IgnorePorts = Ports(v), s => string.Join(',', s.IgnorePorts.Order())),
        new("ignore_addresses", "remote addresses (connections) or bind addresses (listeners) whose sockets publish no events", "a comma-separated list of CIDR blocks (10.0.0.0/8, ::1/128) or addresses, or empty", "",
            (s, v) => s.IgnoreAddresses = Networks(v), s => string.Join(',', s.IgnoreAddresses.Select(n => n.ToString()))),
        new("event_budget_per_second", "connection and listener events published per second; more are counted on events.network.coalesced", "1 to 1000000", "10000",
            (s, v) => s.EventBudgetPerSecond = (int)Number(v, 1, 1_000_000), s => Text(s.EventBudgetPerSecond)),
        new("exposed_listener_allow", "executables (full path) or process names that may listen on a wildcard or public address; any other raises events.network.anomaly. Empty: the check is off", "a comma-separated list, or empty", "",
            (s, v) => s.ExposedListenerAllow = [.. v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)], s => string.Join(',', s.ExposedListenerAllow)),
        new("max_snapshot_bytes", "largest network.snapshot answer; connections past it are left out and counted (listeners always stay)", "4096 to 67108864", "900000",
            (s, v) => s.MaxSnapshotBytes = (int)Number(v, 4096, 64 << 20), s => Text(s.MaxSnapshotBytes)),
        new("destroy_queue_bytes", "the kernel's queue for close notifications (a burst of short connections needs about 500 bytes each); fixed at start", "65536 to 268435456", "8388608",
            (s, v) => s.DestroyQueueBytes = (int)Number(v, 65536, 256 << 20), s => Text(s.DestroyQueueBytes)),
    ];

    private static readonly HashSet<string> StartOnly = ["destroy_queue_bytes"];

    public TimeSpan ScanInterval { get; set; } = TimeSpan.FromSeconds(1);

    public bool Tcp { get; set; } = true;

    public bool Udp { get; set; } = true;

    public IReadOnlySet<int> IgnorePorts { get; set; } = new HashSet<int>();

    public IReadOnlyList<IPNetwork> IgnoreAddresses { get; set; } = [];

    public int EventBudgetPerSecond { get; set; } = 10_000;

    public IReadOnlyList<string> ExposedListenerAllow { get; set; } = [];

    public int MaxSnapshotBytes { get; set; } = 900_000;

    public int DestroyQueueBytes { get; set; } = 8 << 20;

    public static string Usage => "netmond [--<setting> VALUE]...\nsettings:\n" + string.Join('\n', All.Select(s =>
        $"  --{s.Key.Replace('_', '-')}  {s.Description} ({s.Allowed}; default '{s.Default}')"));

    /// <summary>True when events about a socket with these endpoints are filtered out.</summary>
    public bool Ignored(int localPort, int remotePort, IPAddress address) =>
        IgnorePorts.Contains(localPort) || (remotePort != 0 && IgnorePorts.Contains(remotePort))
        || IgnoreAddresses.Any(n => n.Contains(address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address));

    /// <summary>Parses netmond's command line; returns every problem found.</summary>
    public static NetmondSettings Parse(IReadOnlyList<string> args, List<string> errors)
    {
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

        var settings = new NetmondSettings();
        settings.Apply(pairs, errors, atStart: true);
        return settings;
    }

    /// <summary>Applies key/value pairs; nothing changes unless all are valid.</summary>
    public void Apply(IEnumerable<KeyValuePair<string, string>> pairs, List<string> errors, bool atStart)
    {
        var before = errors.Count;
        var trial = Clone();
        foreach (var (key, value) in pairs)
        {
            var setting = All.FirstOrDefault(s => s.Key == key);
            if (setting is null)
            {
                errors.Add($"unknown setting '{key}'; known: {string.Join(", ", All.Select(s => s.Key))}");
                continue;
            }

            if (!atStart && StartOnly.Contains(key))
            {
                errors.Add($"{key} is fixed when netmond starts; change it in the collector's arguments and restart it");
                continue;
            }

            try
            {
                setting.Set(trial, value.Trim());
            }
            catch (FormatException e)
            {
                errors.Add($"{key} is '{value}'; allowed: {setting.Allowed} ({e.Message})");
            }
        }

        if (errors.Count == before)
        {
            foreach (var setting in All)
            {
                setting.Set(this, setting.Get(trial));
            }
        }
    }

    /// <summary>The effective settings, for the HealthCheck details.</summary>
    public IEnumerable<KeyValuePair<string, string>> Describe() => All.Select(s => new KeyValuePair<string, string>(s.Key, s.Get(this)));

    private NetmondSettings Clone() => (NetmondSettings)MemberwiseClone();

    private static double Number(string text, double min, double max) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && !double.IsNaN(v) && v >= min && v <= max
            ? v
            : throw new FormatException("not a number in range");

    private static string Text(double value) => value.ToString(CultureInfo.InvariantCulture);

    private static (bool Tcp, bool Udp) Protocols(string text)
    {
        var parts = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var unknown = parts.Where(p => p is not ("tcp" or "udp")).ToList();
        if (parts.Length == 0 || unknown.Count > 0)
        {
            throw new FormatException(parts.Length == 0 ? "at least one protocol" : $"unknown protocol(s) {string.Join(", ", unknown)}");
        }

        return (parts.Contains("tcp"), parts.Contains("udp"));
    }

    private static HashSet<int> Ports(string text)
    {
        var ports = new HashSet<int>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
            {
                throw new FormatException($"'{part}' is not a port");
            }

            ports.Add(port);
        }

        return ports;
    }

    private static List<IPNetwork> Networks(string text)
    {
        var networks = new List<IPNetwork>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (IPNetwork.TryParse(part, out var network))
            {
                networks.Add(network);
            }
            else if (IPAddress.TryParse(part, out var address))
            {
                networks.Add(new IPNetwork(address, address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 32 : 128));
            }
            else
            {
                throw new FormatException($"'{part}' is neither a CIDR block nor an address");
            }
        }

        return networks;
    }

    private sealed record Setting(string Key, string Description, string Allowed, string Default, Action<NetmondSettings, string> Set, Func<NetmondSettings, string> Get);
}
