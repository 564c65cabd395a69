using Microsoft.Extensions.Configuration;

namespace DaemonEye.Configuration;

/// <summary>The <c>health</c> section: thresholds of <c>daemoneye-cli health</c> (docs/metrics.md).</summary>
public sealed class HealthOptions
{
    public const string SectionName = "health";

    /// <summary>Errors per second, averaged over <see cref="ErrorRateWindowSeconds"/>, above which the agent is Degraded.</summary>
    [ConfigurationKeyName("max_error_rate_per_second")]
    public double MaxErrorRatePerSecond { get; set; } = 1.0;

    /// <summary>The window the error rate is averaged over, in seconds.</summary>
    [ConfigurationKeyName("error_rate_window_seconds")]
    public int ErrorRateWindowSeconds { get; set; } = 60;

    /// <summary>How long the broker probe (Hello to Welcome) and each running collector's HealthCheck RPC may take, in seconds.</summary>
    [ConfigurationKeyName("probe_timeout_seconds")]
    public double ProbeTimeoutSeconds { get; set; } = 2;

    /// <summary>A subscriber's outbound buffer this full (percent) makes the agent Degraded; 100 % full makes it Unhealthy.</summary>
    [ConfigurationKeyName("buffer_degraded_percent")]
    public int BufferDegradedPercent { get; set; } = 80;

    public TimeSpan ErrorRateWindow => TimeSpan.FromSeconds(ErrorRateWindowSeconds);

    public TimeSpan ProbeTimeout => TimeSpan.FromSeconds(ProbeTimeoutSeconds);

    /// <summary>Every problem with these values, each naming the key, the value and what is allowed.</summary>
    public IEnumerable<string> Validate()
    {
        if (!double.IsFinite(MaxErrorRatePerSecond) || MaxErrorRatePerSecond is < 0 or > 1_000_000)
        {
            yield return $"health.max_error_rate_per_second is {MaxErrorRatePerSecond}; allowed: 0 to 1000000 (errors per second)";
        }

        if (ErrorRateWindowSeconds is < 1 or > 86400)
        {
            yield return $"health.error_rate_window_seconds is {ErrorRateWindowSeconds}; allowed: 1 to 86400";
        }

        if (!double.IsFinite(ProbeTimeoutSeconds) || ProbeTimeoutSeconds is < 0.01 or > 300)
        {
            yield return $"health.probe_timeout_seconds is {ProbeTimeoutSeconds}; allowed: 0.01 to 300";
        }

        if (BufferDegradedPercent is < 1 or > 100)
        {
            yield return $"health.buffer_degraded_percent is {BufferDegradedPercent}; allowed: 1 to 100";
        }
    }
}
