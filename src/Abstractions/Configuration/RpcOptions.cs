using Microsoft.Extensions.Configuration;

namespace DaemonEye.Configuration;

/// <summary>The <c>rpc</c> section: request/response calls over the bus.</summary>
public sealed class RpcOptions
{
    public const string SectionName = "rpc";

    /// <summary>Timeout of a call that sets none, in seconds.</summary>
    [ConfigurationKeyName("default_timeout_seconds")]
    public int DefaultTimeoutSeconds { get; set; } = 30;

    /// <summary>How often the agent health-checks each running collector over RPC, in seconds.</summary>
    [ConfigurationKeyName("health_check_interval_seconds")]
    public int HealthCheckIntervalSeconds { get; set; } = 60;

    /// <summary>Give agent-made calls child correlation metadata and log correlation ids.</summary>
    [ConfigurationKeyName("enable_correlation_tracking")]
    public bool EnableCorrelationTracking { get; set; } = true;

    /// <summary>Most calls pending at once; beyond it calls fail at once with ResourceExhausted.</summary>
    [ConfigurationKeyName("max_pending_requests")]
    public int MaxPendingRequests { get; set; } = 1000;

    /// <summary>How often the agent logs (information) the RPC calls, rates and failures since the last such line; 0: never.</summary>
    [ConfigurationKeyName("activity_log_interval_seconds")]
    public int ActivityLogIntervalSeconds { get; set; } = 60;

    public TimeSpan DefaultTimeout => TimeSpan.FromSeconds(DefaultTimeoutSeconds);

    public IEnumerable<string> Validate()
    {
        if (DefaultTimeoutSeconds is < 1 or > 3600)
        {
            yield return $"rpc.default_timeout_seconds is {DefaultTimeoutSeconds}; allowed: 1 to 3600";
        }

        if (HealthCheckIntervalSeconds is < 1 or > 86400)
        {
            yield return $"rpc.health_check_interval_seconds is {HealthCheckIntervalSeconds}; allowed: 1 to 86400";
        }

        if (ActivityLogIntervalSeconds is < 0 or > 86400)
        {
            yield return $"rpc.activity_log_interval_seconds is {ActivityLogIntervalSeconds}; allowed: 0 (off) to 86400";
        }

        if (MaxPendingRequests is < 1 or > 1_000_000)
        {
            yield return $"rpc.max_pending_requests is {MaxPendingRequests}; allowed: 1 to 1000000";
        }
    }
}
