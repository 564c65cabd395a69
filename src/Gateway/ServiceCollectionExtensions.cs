using DaemonEye.Configuration;
using DaemonEye.Grains;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace DaemonEye.Gateway;

public static class ServiceCollectionExtensions
{
    /// <summary>
    /// Adds the bus gateway: the <c>broker</c> options (validated at start-up), the Unix-socket
    /// listener, and the in-process delivery path the Topic grains use. Call after UseOrleans so
    /// the listener starts once the silo is up and stops before it.
    /// </summary>
    public static IServiceCollection AddEventBusGateway(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<BrokerOptions>()
            .Bind(configuration.GetSection(BrokerOptions.SectionName))
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<BrokerOptions>, BrokerOptionsValidator>();
        services.AddSingleton(sp => new BusEndpoint(DaemonEye.Hosting.SocketPaths.BusSocket(sp.GetRequiredService<IOptions<BrokerOptions>>().Value.SocketPath)));
        services.AddSingleton<GatewayStatistics>();
        services.AddSingleton<ConnectionDirectory>();
        services.AddSingleton<IDeliverySink>(sp => sp.GetRequiredService<ConnectionDirectory>());
        services.AddSingleton<BusSocketListener>();
        services.AddHostedService(sp => sp.GetRequiredService<BusSocketListener>());
        return services;
    }

    private sealed class BrokerOptionsValidator : IValidateOptions<BrokerOptions>
    {
        public ValidateOptionsResult Validate(string? name, BrokerOptions options)
        {
            var failures = options.Validate().ToList();
            return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
        }
    }
}
