using System.Net;
using DaemonEye.Configuration;
using DaemonEye.Gateway;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;
using Serilog;
using Serilog.Events;
using Serilog.Formatting.Compact;

namespace DaemonEye.Silo;

internal static partial class HostingExtensions
{
    /// <summary>
    /// Every configuration problem at once, each naming the key, the value and what is allowed.
    /// Empty when the configuration is usable.
    /// </summary>
    public static List<string> ValidateConfiguration(IConfiguration configuration)
    {
        var errors = new List<string>();
        Check(errors, () => configuration.GetBrokerOptions().Validate());
        Check(errors, () => Bind<RpcOptions>(configuration, RpcOptions.SectionName).Validate());
        Check(errors, () => Bind<IpcOptions>(configuration, IpcOptions.SectionName).Validate());
        Check(errors, () => Supervision.ServiceCollectionExtensions.ValidateSupervision(configuration).ToList());
        Check(errors, () => Coordination.ServiceCollectionExtensions.ValidateCoordination(configuration));
        Check(errors, () => Bind<OrleansOptions>(configuration, OrleansOptions.SectionName).Validate());
        Check(errors, () => Bind<LoggingOptions>(configuration, LoggingOptions.SectionName).Validate());
        return errors;
    }

    private static void Check(List<string> errors, Func<IEnumerable<string>> validate)
    {
        try
        {
            errors.AddRange(validate());
        }
        catch (InvalidOperationException ex)
        {
            // The binder could not convert a value (e.g. "abc" for a number); its message names the key.
            errors.Add((ex.InnerException is null ? ex.Message : $"{ex.Message} {ex.InnerException.Message}").Replace(':', '.'));
        }
    }

    public static T Bind<T>(IConfiguration configuration, string section) where T : new()
    {
        var options = new T();
        configuration.GetSection(section).Bind(options);
        return options;
    }

    /// <summary>Serilog to the console, human-readable or compact JSON, at the configured level.</summary>
    public static IServiceCollection AddAgentLogging(this IServiceCollection services, IConfiguration configuration)
    {
        var options = Bind<LoggingOptions>(configuration, LoggingOptions.SectionName);
        var level = Enum.Parse<LogEventLevel>(options.Level, ignoreCase: true);
        return services.AddSerilog(lc =>
        {
            lc.MinimumLevel.Is(level)
                .MinimumLevel.Override("Orleans", LogEventLevel.Warning)
                // The silo warns at every start that server GC is off; workstation GC is our choice
                // (a 2-core host shared with the collectors), so that note is noise.
                .MinimumLevel.Override("Orleans.Runtime.Silo", LogEventLevel.Error)
                // At start-up the watchdog reports a "participant check" overdue by tens of minutes on a
                // silo up for one second (seen: 00:43:31); we have not found why, and it is noise here.
                .MinimumLevel.Override("Orleans.Runtime.Watchdog", LogEventLevel.Error)
                .MinimumLevel.Override("Microsoft", LogEventLevel.Warning)
                .MinimumLevel.Override("Polly", LogEventLevel.Warning)
                // The ready line is how operators and supervisors know the sockets accept; keep it at any level.
                .MinimumLevel.Override("DaemonEye.Silo.HostingExtensions.ReadyAnnouncer", LogEventLevel.Information)
                .MinimumLevel.Override("Microsoft.Hosting.Lifetime", LogEventLevel.Information)
                .Enrich.FromLogContext();
            if (string.Equals(options.Format, "json", StringComparison.OrdinalIgnoreCase))
            {
                lc.WriteTo.Console(new CompactJsonFormatter());
            }
            else
            {
                lc.WriteTo.Console(outputTemplate: "[{Timestamp:HH:mm:ss.fff} {Level:u3}] {SourceContext}: {Message:lj}{NewLine}{Exception}");
            }
        });
    }

    /// <summary>
    /// One silo on 127.0.0.1 with in-memory clustering and no client gateway: nothing listens on a
    /// non-loopback address, and no Orleans client can connect (the CLI talks protobuf to the sockets).
    /// </summary>
    public static ISiloBuilder UseSingleLoopbackSilo(this ISiloBuilder silo, IConfiguration configuration)
    {
        var port = Bind<OrleansOptions>(configuration, OrleansOptions.SectionName).ResolvePort();
        silo.UseLocalhostClustering(siloPort: port, gatewayPort: 0, serviceId: "daemoneye-agent", clusterId: "daemoneye");
        silo.Configure<EndpointOptions>(o =>
        {
            o.AdvertisedIPAddress = IPAddress.Loopback;
            o.SiloPort = port;
            o.SiloListeningEndpoint = new IPEndPoint(IPAddress.Loopback, port);
            o.GatewayPort = 0;
            o.GatewayListeningEndpoint = null;
        });
        return silo;
    }

    /// <summary>Logs the ready line once every hosted service (silo, then gateway) has started.</summary>
    public static IServiceCollection AddReadyAnnouncement(this IServiceCollection services) =>
        services.AddHostedService<ReadyAnnouncer>();

    private sealed partial class ReadyAnnouncer(BusEndpoint bus, Gateway.Ipc.IpcEndpoint ipc, ILogger<ReadyAnnouncer> logger) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken)
        {
            LogReady(logger, AgentInfo.Version, bus.SocketPath, ipc.SocketPath, Environment.ProcessId);
            return Task.CompletedTask;
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "daemoneye-agent ready: version {Version}, bus socket {BusSocket}, IPC socket {IpcSocket}, pid {Pid}")]
        private static partial void LogReady(Microsoft.Extensions.Logging.ILogger logger, string version, string busSocket, string ipcSocket, int pid);
    }
}
