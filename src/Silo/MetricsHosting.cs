using System.Net;
using System.Net.Sockets;
using DaemonEye.Configuration;
using DaemonEye.Gateway.Metrics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Metrics;

namespace DaemonEye.Silo;

internal static partial class MetricsHosting
{
    /// <summary>
    /// With <c>broker.enable_metrics: true</c>, serves the agent's meters (docs/metrics.md) in
    /// Prometheus text format through OpenTelemetry at http://127.0.0.1:&lt;broker.metrics_port&gt;/metrics
    /// (port 0: a free port, logged at start-up). With false, nothing listens;
    /// <c>daemoneye-cli metrics</c> works either way (it reads the agent's own aggregator over IPC).
    /// </summary>
    public static IServiceCollection AddPrometheusMetrics(this IServiceCollection services, IConfiguration configuration)
    {
        var broker = configuration.GetBrokerOptions();
        if (!broker.EnableMetrics)
        {
            return services;
        }

        var port = broker.MetricsPort != 0 ? broker.MetricsPort : FreeLoopbackPort();
        var endpoint = new PrometheusEndpoint(true, $"http://127.0.0.1:{port}/metrics");
        services.AddSingleton(endpoint);
        services.AddOpenTelemetry().WithMetrics(metrics => metrics
            .AddMeter(MetricNames.Meters)
            .AddPrometheusHttpListener(o =>
            {
                // An IP literal: the listener binds 127.0.0.1 alone, never a wildcard address.
                o.Host = "127.0.0.1";
                o.Port = port;
                o.ScrapeEndpointPath = "/metrics";
                // Each scrape reads the instruments afresh (a scrape is cheap; stale answers confuse).
                o.ScrapeResponseCacheDurationMilliseconds = 0;
            }));
        services.AddHostedService<PrometheusAnnouncer>();
        return services;
    }

    private static int FreeLoopbackPort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    private sealed partial class PrometheusAnnouncer(PrometheusEndpoint endpoint, ILogger<PrometheusAnnouncer> logger) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken)
        {
            LogServing(logger, endpoint.Url);
            return Task.CompletedTask;
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        [LoggerMessage(EventId = 5, Level = LogLevel.Information, Message = "Prometheus metrics served at {Url} (broker.enable_metrics)")]
        private static partial void LogServing(ILogger logger, string url);
    }
}
