using DaemonEye.Gateway.Health;
using DaemonEye.Protocol.Ipc.V1;

namespace DaemonEye.Gateway.Metrics;

/// <summary>Where the Prometheus endpoint is, if broker.enable_metrics serves one (the silo registers it).</summary>
public sealed record PrometheusEndpoint(bool Enabled, string Url)
{
    public static PrometheusEndpoint Disabled { get; } = new(false, string.Empty);
}

/// <summary>What the IPC server answers to <c>metrics</c> and <c>health</c>.</summary>
internal sealed class AgentObservability(MetricsAggregator metrics, AgentHealth health, PrometheusEndpoint prometheus)
{
    public MetricsResponse Metrics()
    {
        var response = new MetricsResponse { PrometheusEnabled = prometheus.Enabled, PrometheusEndpoint = prometheus.Url };
        response.Metrics.AddRange(metrics.Snapshot());
        return response;
    }

    public Task<HealthResponse> HealthAsync(CancellationToken cancellationToken) => health.EvaluateAsync(cancellationToken);
}
