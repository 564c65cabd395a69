using System.Globalization;
using Microsoft.Extensions.Configuration;

namespace DaemonEye.Configuration;

/// <summary>The <c>process_manager</c> section: how the agent supervises collector processes.</summary>
/// <remarks>Durations are in seconds and may be fractional (0.5).</remarks>
public sealed class ProcessManagerOptions
{
    public const string SectionName = "process_manager";

    /// <summary>After a Stop RPC, how long the collector has to exit before it gets SIGTERM.</summary>
    [ConfigurationKeyName("graceful_shutdown_timeout_seconds")]
    public double GracefulShutdownTimeoutSeconds { get; set; } = 60;

    /// <summary>After SIGTERM, how long the collector has to exit before it gets SIGKILL.</summary>
    [ConfigurationKeyName("force_shutdown_timeout_seconds")]
    public double ForceShutdownTimeoutSeconds { get; set; } = 5;

    /// <summary>How often the agent sends each running collector a HealthCheck RPC.</summary>
    [ConfigurationKeyName("health_check_interval_seconds")]
    public double HealthCheckIntervalSeconds { get; set; } = 120;

    /// <summary>How often collectors publish heartbeats; one missed = Degraded, three = Unhealthy.</summary>
    [ConfigurationKeyName("heartbeat_interval_seconds")]
    public double HeartbeatIntervalSeconds { get; set; } = 5;

    /// <summary>How long a started collector has to register on the bus.</summary>
    [ConfigurationKeyName("startup_timeout_seconds")]
    public double StartupTimeoutSeconds { get; set; } = 30;

    [ConfigurationKeyName("enable_auto_restart")]
    public bool EnableAutoRestart { get; set; } = true;

    /// <summary>Restarts allowed within <see cref="RestartWindowSeconds"/>; one more failure and the collector is Failed.</summary>
    [ConfigurationKeyName("max_restart_attempts")]
    public int MaxRestartAttempts { get; set; } = 3;

    /// <summary>First restart delay; each further restart in the window doubles it (capped at 60 s or this value, whichever is larger).</summary>
    [ConfigurationKeyName("restart_backoff_seconds")]
    public double RestartBackoffSeconds { get; set; } = 5;

    /// <summary>Failures older than this are forgotten, so a collector that runs this long has its attempt count reset.</summary>
    [ConfigurationKeyName("restart_window_seconds")]
    public double RestartWindowSeconds { get; set; } = 300;

    public TimeSpan GracefulShutdownTimeout => TimeSpan.FromSeconds(GracefulShutdownTimeoutSeconds);

    public TimeSpan ForceShutdownTimeout => TimeSpan.FromSeconds(ForceShutdownTimeoutSeconds);

    public TimeSpan HealthCheckInterval => TimeSpan.FromSeconds(HealthCheckIntervalSeconds);

    public TimeSpan HeartbeatInterval => TimeSpan.FromSeconds(HeartbeatIntervalSeconds);

    public TimeSpan StartupTimeout => TimeSpan.FromSeconds(StartupTimeoutSeconds);

    public TimeSpan RestartWindow => TimeSpan.FromSeconds(RestartWindowSeconds);

    /// <summary>Delay before restart number <paramref name="attempt"/> (1-based) within the window.</summary>
    public TimeSpan BackoffFor(int attempt)
    {
        var cap = Math.Max(60, RestartBackoffSeconds);
        var seconds = RestartBackoffSeconds * Math.Pow(2, Math.Max(0, attempt - 1));
        return TimeSpan.FromSeconds(Math.Min(seconds, cap));
    }

    public IEnumerable<string> Validate()
    {
        foreach (var (key, value, min, max) in new[]
        {
            ("graceful_shutdown_timeout_seconds", GracefulShutdownTimeoutSeconds, 0.01, 3600.0),
            ("force_shutdown_timeout_seconds", ForceShutdownTimeoutSeconds, 0.01, 3600.0),
            ("health_check_interval_seconds", HealthCheckIntervalSeconds, 0.01, 86400.0),
            ("heartbeat_interval_seconds", HeartbeatIntervalSeconds, 0.01, 3600.0),
            ("startup_timeout_seconds", StartupTimeoutSeconds, 0.01, 3600.0),
            ("restart_backoff_seconds", RestartBackoffSeconds, 0.0, 3600.0),
            ("restart_window_seconds", RestartWindowSeconds, 1.0, 604800.0),
        })
        {
            if (double.IsNaN(value) || value < min || value > max)
            {
                yield return string.Create(CultureInfo.InvariantCulture, $"process_manager.{key} is {value}; allowed: {min} to {max} seconds");
            }
        }

        if (MaxRestartAttempts is < 0 or > 1000)
        {
            yield return $"process_manager.max_restart_attempts is {MaxRestartAttempts}; allowed: 0 to 1000";
        }
    }
}

/// <summary>One entry of the <c>collectors</c> list: a collector process the agent supervises.</summary>
public sealed class CollectorDefinition
{
    public const string SectionName = "collectors";

    /// <summary>Collector id: its client id on the bus and the last segment of control.collector.&lt;id&gt;.</summary>
    [ConfigurationKeyName("id")]
    public string Id { get; set; } = string.Empty;

    /// <summary>
    /// Collector type: instances with the same type (procmond-1, procmond-2) share that type's tasks
    /// round-robin, and an aggregated task expects one answer per type. Empty: the id.
    /// </summary>
    [ConfigurationKeyName("type")]
    public string Type { get; set; } = string.Empty;

    /// <summary>The type, or the id when no type is configured.</summary>
    public string EffectiveType => string.IsNullOrEmpty(Type) ? Id : Type;

    /// <summary>Program to run: an absolute path, or a relative one (looked up in the agent's working directory, then in the agent's own directory); a .dll runs with the agent's dotnet.</summary>
    [ConfigurationKeyName("executable")]
    public string Executable { get; set; } = string.Empty;

    [ConfigurationKeyName("arguments")]
    public List<string> Arguments { get; set; } = [];

    [ConfigurationKeyName("environment")]
    public Dictionary<string, string> Environment { get; set; } = [];

    [ConfigurationKeyName("enabled")]
    public bool Enabled { get; set; } = true;

    public IEnumerable<string> Validate(int index)
    {
        var where = $"collectors[{index}]";
        var validation = Topics.TopicRules.ValidateTopic(Topics.WellKnownTopics.CollectorPrefix + Id);
        if (Id.Length == 0 || Id.Contains('.', StringComparison.Ordinal) || !validation.IsValid)
        {
            yield return $"{where}.id is '{Id}'; allowed: 1 to 64 characters from a-z, 0-9, '_' and '-'";
        }

        if (Type.Length > 0 && (Type.Contains('.', StringComparison.Ordinal) || !Topics.TopicRules.ValidateTopic(Topics.WellKnownTopics.CollectorPrefix + Type).IsValid))
        {
            yield return $"{where}.type is '{Type}'; allowed: empty (the id) or 1 to 64 characters from a-z, 0-9, '_' and '-'";
        }

        if (string.IsNullOrWhiteSpace(Executable))
        {
            yield return $"{where}.executable is empty; give the program to run";
        }
    }
}

/// <summary>The <c>ipc</c> section: the CLI's control socket.</summary>
public sealed class IpcOptions
{
    public const string SectionName = "ipc";

    /// <summary>IPC socket path; empty means ipc.sock beside the bus socket.</summary>
    [ConfigurationKeyName("socket_path")]
    public string? SocketPath { get; set; }

    /// <summary>Most IPC connections open at once; one more is refused (RESOURCE_EXHAUSTED).</summary>
    [ConfigurationKeyName("max_connections")]
    public int MaxConnections { get; set; } = 128;

    /// <summary>
    /// How long an IPC connection has to complete its next request after it was accepted or its last
    /// request was answered, in seconds; then it is closed. Covers a client that never sends, and one
    /// that sends a request a byte at a time. 0: off.
    /// </summary>
    [ConfigurationKeyName("idle_timeout_seconds")]
    public double IdleTimeoutSeconds { get; set; } = 60;

    /// <summary>The idle timeout; <see cref="TimeSpan.Zero"/> when off.</summary>
    public TimeSpan IdleTimeout => TimeSpan.FromSeconds(IdleTimeoutSeconds);

    public IEnumerable<string> Validate()
    {
        if (SocketPath is { Length: > 0 } path && System.Text.Encoding.UTF8.GetByteCount(Path.GetFullPath(path)) > 107)
        {
            yield return $"ipc.socket_path is '{path}'; a Unix socket path must be at most 107 bytes";
        }

        if (MaxConnections is < 1 or > 10_000)
        {
            yield return $"ipc.max_connections is {MaxConnections}; allowed: 1 to 10000";
        }

        if (double.IsNaN(IdleTimeoutSeconds) || IdleTimeoutSeconds < 0 || (IdleTimeoutSeconds > 0 && IdleTimeoutSeconds < 0.01) || IdleTimeoutSeconds > 86400)
        {
            yield return string.Create(CultureInfo.InvariantCulture, $"ipc.idle_timeout_seconds is {IdleTimeoutSeconds}; allowed: 0 (off) or 0.01 to 86400 seconds");
        }
    }
}
