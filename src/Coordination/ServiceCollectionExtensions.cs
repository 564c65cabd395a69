using DaemonEye.Gateway.Ipc;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace DaemonEye.Coordination;

public static class ServiceCollectionExtensions
{
    /// <summary>
    /// Adds task distribution, result aggregation and detection rules (the <c>coordination</c>
    /// section), with their IPC operations. Call after AddEventBusGateway and AddCollectorSupervision
    /// (whose <c>process_manager</c> and <c>collectors</c> options it reads; binding them twice would
    /// double the collectors list).
    /// </summary>
    public static IServiceCollection AddCoordination(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<CoordinationOptions>()
            .Bind(configuration.GetSection(CoordinationOptions.SectionName))
            .Validate(o => !o.Validate().Any(), "coordination is invalid")
            .ValidateOnStart();
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<TaskCoordinator>();
        services.AddSingleton<EventRuleService>();
        services.AddHostedService(sp => sp.GetRequiredService<EventRuleService>());
        services.AddSingleton<DetectionRuleService>();
        services.AddSingleton<Gateway.Health.IAgentHealthContributor, RulesHealth>();
        services.AddHostedService(sp =>
        {
            // The coordinator attaches to collector presence when it is built: before any collector registers.
            sp.GetRequiredService<TaskCoordinator>();
            return sp.GetRequiredService<DetectionRuleService>();
        });
        services.AddSingleton<IIpcRequestHandler, CoordinationIpcHandler>();
        return services;
    }

    /// <summary>Every problem of the coordination section.</summary>
    public static IEnumerable<string> ValidateCoordination(IConfiguration configuration)
    {
        var options = new CoordinationOptions();
        configuration.GetSection(CoordinationOptions.SectionName).Bind(options);
        return options.Validate();
    }
}
