using DaemonEye.Configuration;
using DaemonEye.Grains;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace DaemonEye.Gateway;

public static class ServiceCollectionExtensions
{
    /// <summary>
    /// Adds the bus gateway: the <c>broker</c> and <c>security</c> options (validated at start-up), the access rules, the Unix-socket
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
        services.AddOptions<SecurityOptions>()
            .Bind(configuration.GetSection(SecurityOptions.SectionName))
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<SecurityOptions>, SecurityOptionsValidator>();
        services.AddSingleton<Security.SpawnedCollectors>();
        services.AddSingleton<Security.AccessControl>();
        services.AddSingleton<GatewayStatistics>();
        services.AddSingleton<LocalSubscriptions>();
        services.AddSingleton<ConnectionDirectory>();
        services.AddSingleton<IDeliverySink>(sp => sp.GetRequiredService<ConnectionDirectory>());
        services.TryAddSingleton<TopicRoutes>();
        services.AddOptions<RpcOptions>()
            .Bind(configuration.GetSection(RpcOptions.SectionName))
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<RpcOptions>, RpcOptionsValidator>();
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<Collectors.CollectorDirectory>();
        services.AddSingleton<Rpc.RpcRouter>();
        services.AddSingleton<Rpc.AgentRpcClient>();
        services.AddSingleton<Rpc.IAgentRpc>(sp => sp.GetRequiredService<Rpc.AgentRpcClient>());
        AddDurability(services, configuration);
        services.AddSingleton<IBusPublisher, LocalPublisher>();
        Metrics.MetricsServiceCollectionExtensions.AddBusMetrics(services, configuration);
        services.AddSingleton<BusSocketListener>();
        services.AddHostedService(sp => sp.GetRequiredService<BusSocketListener>());
        AddMqtt(services, configuration);
        services.AddHostedService<Rpc.RpcActivityLogger>();
        return services;
    }

    /// <summary>
    /// The <c>mqtt</c> section (validated at start-up) and, when it is enabled, the MQTT listener
    /// (src/Gateway/Mqtt): its Unix socket is bound with the bus socket's, it accepts once the silo is up.
    /// </summary>
    private static void AddMqtt(IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<MqttOptions>()
            .Bind(configuration.GetSection(MqttOptions.SectionName))
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<MqttOptions>, MqttOptionsValidator>();
        if (!configuration.GetSection(MqttOptions.SectionName).GetValue("enabled", true))
        {
            return;
        }

        services.AddSingleton<Mqtt.MqttMetrics>();
        services.AddSingleton<Mqtt.MqttBridge>();
        services.AddHostedService(sp => sp.GetRequiredService<Mqtt.MqttBridge>());
    }

    private sealed class MqttOptionsValidator : IValidateOptions<MqttOptions>
    {
        public ValidateOptionsResult Validate(string? name, MqttOptions options)
        {
            var failures = options.Validate().ToList();
            return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
        }
    }

    /// <summary>
    /// The <c>durability</c> section (validated at start-up) and, when it is enabled, the durable log
    /// (opened, and any torn final record reported, before the bus socket accepts) and its retention.
    /// </summary>
    private static void AddDurability(IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<DurabilityOptions>()
            .Bind(configuration.GetSection(DurabilityOptions.SectionName))
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<DurabilityOptions>, DurabilityOptionsValidator>();
        // Answers `subscribe --last N` also when durability is off (with the reason there is nothing to replay).
        services.AddSingleton<Ipc.IIpcRequestHandler>(sp => new Durability.RetainedIpcHandler(sp.GetService<Durability.DurableLog>()));
        if (!configuration.GetSection(DurabilityOptions.SectionName).GetValue("enabled", true))
        {
            return;
        }

        services.AddSingleton(sp => new Durability.DurableLog(
            sp.GetRequiredService<IOptions<DurabilityOptions>>().Value,
            sp.GetRequiredService<Microsoft.Extensions.Logging.ILogger<Durability.DurableLog>>(),
            sp.GetRequiredService<TimeProvider>()));
        services.AddHostedService<Durability.DurableLogRetention>();
        services.AddSingleton<Durability.DurableLogObservability>();
        services.AddSingleton<Health.IAgentHealthContributor>(sp => sp.GetRequiredService<Durability.DurableLogObservability>());
    }

    private sealed class DurabilityOptionsValidator : IValidateOptions<DurabilityOptions>
    {
        public ValidateOptionsResult Validate(string? name, DurabilityOptions options)
        {
            var failures = options.Validate().ToList();
            return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
        }
    }

    /// <summary>
    /// Adds the IPC server (the CLI's control socket, <c>ipc.socket_path</c>, default ipc.sock beside the
    /// bus socket). Needs an <see cref="IAgentControl"/> (the supervisor registers one).
    /// </summary>
    public static IServiceCollection AddAgentIpc(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<IpcOptions>()
            .Bind(configuration.GetSection(IpcOptions.SectionName))
            .ValidateOnStart();
        var collectors = ConfigurationValidator.BindCollectors(configuration).Count(c => c.Enabled);
        services.AddSingleton<IValidateOptions<IpcOptions>>(sp => new IpcOptionsValidator(sp.GetRequiredService<IOptions<BrokerOptions>>(), collectors));
        services.AddSingleton(sp => new Ipc.IpcEndpoint(DaemonEye.Hosting.SocketPaths.IpcSocket(
            sp.GetRequiredService<IOptions<IpcOptions>>().Value.SocketPath,
            sp.GetRequiredService<IOptions<BrokerOptions>>().Value.SocketPath)));
        services.AddSingleton<Ipc.IpcSocketListener>();
        services.AddHostedService(sp => sp.GetRequiredService<Ipc.IpcSocketListener>());
        return services;
    }

    /// <summary>
    /// The ipc section, and (the IPC listener being the last socket registered) whether every
    /// connection both sockets allow fits under the agent's open-file limit (see <see cref="DescriptorBudget"/>).
    /// </summary>
    private sealed class IpcOptionsValidator(IOptions<BrokerOptions> broker, int collectors) : IValidateOptions<IpcOptions>
    {
        public ValidateOptionsResult Validate(string? name, IpcOptions options)
        {
            var failures = options.Validate().ToList();
            if (failures.Count == 0 && DaemonEye.Hosting.Posix.OpenFileLimit() is { } limit
                && DescriptorBudget.Problem(broker.Value, options, collectors, limit.Soft) is { } problem)
            {
                failures.Add(problem);
            }

            return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
        }
    }

    private sealed class RpcOptionsValidator : IValidateOptions<RpcOptions>
    {
        public ValidateOptionsResult Validate(string? name, RpcOptions options)
        {
            var failures = options.Validate().ToList();
            return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
        }
    }

    private sealed class SecurityOptionsValidator : IValidateOptions<SecurityOptions>
    {
        public ValidateOptionsResult Validate(string? name, SecurityOptions options)
        {
            var failures = options.Validate().ToList();
            return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
        }
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
