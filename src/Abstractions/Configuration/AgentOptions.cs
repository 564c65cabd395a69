using Microsoft.Extensions.Configuration;

namespace DaemonEye.Configuration;

/// <summary>
/// The <c>orleans</c> section: the optional dashboard. The silo itself has no setting: it opens no
/// socket (src/Silo/ClosedSilo.cs), so the former <c>silo_port</c> key is gone (reported as unknown).
/// </summary>
public sealed class OrleansOptions
{
    public const string SectionName = "orleans";

    /// <summary>Serve the Orleans dashboard (development aid) on 127.0.0.1:<see cref="DashboardPort"/>. Off by default; <c>daemoneye-agent --dashboard</c> turns it on.</summary>
    [ConfigurationKeyName("dashboard")]
    public bool Dashboard { get; set; }

    /// <summary>The dashboard's port on 127.0.0.1 when <see cref="Dashboard"/> is on.</summary>
    [ConfigurationKeyName("dashboard_port")]
    public int DashboardPort { get; set; } = 8080;

    public IEnumerable<string> Validate()
    {
        if (DashboardPort is < 1 or > 65535)
        {
            yield return $"orleans.dashboard_port is {DashboardPort}; allowed: 1 to 65535";
        }
    }
}

/// <summary>The <c>logging</c> section.</summary>
public sealed class LoggingOptions
{
    public const string SectionName = "logging";

    private static readonly string[] Levels = ["verbose", "debug", "information", "warning", "error", "fatal"];
    private static readonly string[] Formats = ["console", "json"];

    /// <summary>Minimum level: verbose, debug, information, warning, error or fatal.</summary>
    [ConfigurationKeyName("level")]
    public string Level { get; set; } = "information";

    /// <summary>console (human-readable) or json (compact JSON, one object per line).</summary>
    [ConfigurationKeyName("format")]
    public string Format { get; set; } = "console";

    public IEnumerable<string> Validate()
    {
        if (!Levels.Contains(Level, StringComparer.OrdinalIgnoreCase))
        {
            yield return $"logging.level is '{Level}'; allowed: {string.Join(", ", Levels)}";
        }

        if (!Formats.Contains(Format, StringComparer.OrdinalIgnoreCase))
        {
            yield return $"logging.format is '{Format}'; allowed: {string.Join(", ", Formats)}";
        }
    }
}
