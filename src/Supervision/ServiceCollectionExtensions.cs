using DaemonEye.Configuration;
using DaemonEye.Gateway;
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
            .Bind(configuration.GetSection("collectors"));
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<ProcessLauncher>();
        services.AddSingleton<CollectorSupervisor>();
        services.AddSingleton<IAgentControl>(sp => sp.GetRequiredService<CollectorSupervisor>());
        services.AddHostedService(sp => sp.GetRequiredService<CollectorSupervisor>());
        return services;
    }

    /// <summary>Every problem of the process_manager and collectors sections.</summary>
    public static IEnumerable<string> ValidateSupervision(IConfiguration configuration)
    {
        var pm = new ProcessManagerOptions();
        configuration.GetSection(ProcessManagerOptions.SectionName).Bind(pm);
        foreach (var error in pm.Validate())
        {
            yield return error;
        }

        var collectors = new List<CollectorDefinition>();
        configuration.GetSection("collectors").Bind(collectors);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < collectors.Count; i++)
        {
            foreach (var error in collectors[i].Validate(i))
            {
                yield return error;
            }

            if (!seen.Add(collectors[i].Id))
            {
                yield return $"collectors[{i}].id '{collectors[i].Id}' is used twice; collector ids must be unique";
            }
        }
    }
}
