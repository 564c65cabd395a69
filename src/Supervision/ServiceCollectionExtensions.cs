using DaemonEye.Configuration;
using DaemonEye.Gateway;
using DaemonEye.Gateway.Ipc;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace DaemonEye.Supervision;

public static class ServiceCollectionExtensions
{
    /// <summary>
    /// Adds collector supervision: the <c>process_manager</c> and <c>collectors</c> sections
    /// (validated at start-up), the launcher and the supervisor. Call after AddEventBusGateway, so the
    /// supervisor starts once the bus accepts connections and stops (stopping the collectors) before it.
    /// </summary>
    public static IServiceCollection AddCollectorSupervision(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<ProcessManagerOptions>()
            .Bind(configuration.GetSection(ProcessManagerOptions.SectionName))
            .Validate(o => !o.Validate().Any(), "process_manager is invalid")
            .ValidateOnStart();
        services.AddOptions<List<CollectorDefinition>>()
            .Bind(configuration.GetSection(CollectorDefinition.SectionName));
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<CollectorOutputLog>();
        services.AddSingleton<IIpcRequestHandler, CollectorLogsIpcHandler>();
        services.AddSingleton<ProcessLauncher>();
        services.AddSingleton<CollectorSupervisor>();
        services.AddSingleton<IAgentControl>(sp => sp.GetRequiredService<CollectorSupervisor>());
        services.AddHostedService(sp => sp.GetRequiredService<CollectorSupervisor>());
        return services;
    }

    /// <summary>
    /// Reloads the configuration on SIGHUP: <paramref name="load"/> builds it afresh the way start-up
    /// did (file, environment, command line); <paramref name="live"/> is the configuration the services
    /// read (the host's), which a valid reload updates. Call after AddCollectorSupervision.
    /// </summary>
    public static IServiceCollection AddConfigurationReload(this IServiceCollection services, Func<IConfigurationRoot> load, LiveConfiguration live)
    {
        services.AddSingleton(sp => new ConfigurationReloader(load, live, sp.GetRequiredService<CollectorSupervisor>(),
            sp.GetRequiredService<Microsoft.Extensions.Logging.ILogger<ConfigurationReloader>>()));
        services.AddHostedService(sp => sp.GetRequiredService<ConfigurationReloader>());
        return services;
    }
}
