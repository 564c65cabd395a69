using DaemonEye.Configuration;
using DaemonEye.Gateway.Health;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace DaemonEye.Gateway.Metrics;

public static class MetricsServiceCollectionExtensions
{
    /// <summary>
    /// The bus's, RPC's and collectors' instruments, the agent's own aggregator of them (for
    /// <c>daemoneye-cli metrics</c>), and the health checks with the <c>health</c> options (validated
    /// at start-up). Always on: <c>broker.enable_metrics</c> only decides whether the silo also
    /// serves them to Prometheus.
    /// </summary>
    internal static IServiceCollection AddBusMetrics(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddMetrics();
        services.AddOptions<HealthOptions>()
            .Bind(configuration.GetSection(HealthOptions.SectionName))
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<HealthOptions>, HealthOptionsValidator>();
        services.AddSingleton<MetricsAggregator>();
        services.AddSingleton(sp => new BusMetrics(
            sp.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>(),
            sp.GetRequiredService<GatewayStatistics>(),
            sp.GetRequiredService<ConnectionDirectory>()));
        services.AddSingleton<RpcMetrics>();
        services.TryAddSingleton(PrometheusEndpoint.Disabled);
        services.AddSingleton<AgentHealth>();
        services.AddSingleton<AgentObservability>();
        return services;
    }

    private sealed class HealthOptionsValidator : IValidateOptions<HealthOptions>
    {
        public ValidateOptionsResult Validate(string? name, HealthOptions options)
        {
            var failures = options.Validate().ToList();
            return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
        }
    }
}
