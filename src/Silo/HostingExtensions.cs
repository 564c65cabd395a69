using DaemonEye.Configuration;
using DaemonEye.Gateway;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Serilog;
using Serilog.Events;
using Serilog.Formatting.Compact;
using Serilog.Sinks.SystemConsole.Themes;

namespace DaemonEye.Silo;

internal static partial class HostingExtensions
{
    public static T Bind<T>(IConfiguration configuration, string section) where T : new() =>
        ConfigurationValidator.Bind<T>(configuration, section);

    /// <summary>Logs each configuration warning (unknown keys) once logging is up, before anything else starts.</summary>
    public static IServiceCollection AddConfigurationWarnings(this IServiceCollection services, ConfigurationReport report) =>
        services.AddHostedService(sp => new ConfigurationWarningLogger(report, sp.GetRequiredService<ILogger<ConfigurationWarningLogger>>()));

    private sealed partial class ConfigurationWarningLogger(ConfigurationReport report, ILogger<ConfigurationWarningLogger> logger) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken)
        {
            foreach (var warning in report.Warnings)
            {
                LogWarning(logger, warning);
            }

            return Task.CompletedTask;
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        [LoggerMessage(EventId = 2, Level = LogLevel.Warning, Message = "Configuration: {Warning}")]
        private static partial void LogWarning(Microsoft.Extensions.Logging.ILogger logger, string warning);
    }

    /// <summary>
    /// Serilog to the console, human-readable or compact JSON, at the configured level. The level follows
    /// <c>logging.level</c> live (a SIGHUP reload); the format is chosen once, at start.
    /// </summary>
    public static IServiceCollection AddAgentLogging(this IServiceCollection services, IConfiguration configuration)
    {
        var options = Bind<LoggingOptions>(configuration, LoggingOptions.SectionName);
        var level = new Serilog.Core.LoggingLevelSwitch(ParseLevel(options.Level));
        services.AddOptions<LoggingOptions>().Bind(configuration.GetSection(LoggingOptions.SectionName));
        services.AddSingleton(level);
        services.AddHostedService<LogLevelFollower>();
        return services.AddSerilog(lc =>
        {
            lc.MinimumLevel.ControlledBy(level)
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
                .MinimumLevel.Override("DaemonEye.Silo.Dashboard", LogEventLevel.Information)
                .MinimumLevel.Override("Microsoft.Hosting.Lifetime", LogEventLevel.Information)
                .Filter.ByExcluding(IsStartupFailureAgentRunnerReports)
                .Enrich.FromLogContext();
            if (string.Equals(options.Format, "json", StringComparison.OrdinalIgnoreCase))
            {
                lc.WriteTo.Console(new CompactJsonFormatter());
            }
            else if (Systemd.IsJournalStream())
            {
                // Under systemd with stdout connected to the journal: a <priority> prefix journald turns into
                // the entry's PRIORITY, no timestamp (the journal keeps its own) and no colour.
                lc.Enrich.With<Systemd.SyslogPriorityEnricher>()
                    .WriteTo.Console(outputTemplate: "<{SyslogPriority}>{SourceContext}: {Message:lj}{NewLine}{Exception}", theme: ConsoleTheme.None);
            }
            else
            {
                lc.WriteTo.Console(outputTemplate: "[{Timestamp:HH:mm:ss.fff} {Level:u3}] {SourceContext}: {Message:lj}{NewLine}{Exception}");
            }
        });
    }

    private static LogEventLevel ParseLevel(string level) => Enum.Parse<LogEventLevel>(level, ignoreCase: true);

    /// <summary>Moves the log level switch to <c>logging.level</c> whenever the live configuration changes.</summary>
    private sealed partial class LogLevelFollower(
        Microsoft.Extensions.Options.IOptionsMonitor<LoggingOptions> options,
        Serilog.Core.LoggingLevelSwitch level,
        ILogger<LogLevelFollower> logger) : IHostedService, IDisposable
    {
        private IDisposable? _subscription;

        public Task StartAsync(CancellationToken cancellationToken)
        {
            _subscription = options.OnChange((o, _) =>
            {
                var next = ParseLevel(o.Level);
                if (next != level.MinimumLevel)
                {
                    var before = level.MinimumLevel;
                    level.MinimumLevel = next;
                    LogLevelChanged(logger, before, next);
                }
            });
            return Task.CompletedTask;
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public void Dispose() => _subscription?.Dispose();

        [LoggerMessage(EventId = 4, Level = LogLevel.Warning, Message = "Log level changed from {Before} to {After} (logging.level, configuration reload)")]
        private static partial void LogLevelChanged(Microsoft.Extensions.Logging.ILogger logger, LogEventLevel before, LogEventLevel after);
    }

    /// <summary>
    /// The host's "Hosting failed to start" with the stack trace of a failure the agent's own code threw
    /// for the operator (a socket in use, a directory not private, invalid options): AgentRunner prints its
    /// message and exits 1 or 2, so the trace is noise before the clean message. Failures thrown elsewhere
    /// keep their trace.
    /// </summary>
    private static bool IsStartupFailureAgentRunnerReports(LogEvent logEvent) =>
        logEvent.Exception is InvalidOperationException or Microsoft.Extensions.Options.OptionsValidationException
        && logEvent.Properties.TryGetValue("SourceContext", out var source)
        && source is ScalarValue { Value: "Microsoft.Extensions.Hosting.Internal.Host" }
        && (logEvent.Exception is Microsoft.Extensions.Options.OptionsValidationException
            || logEvent.Exception.TargetSite?.DeclaringType?.Namespace?.StartsWith("DaemonEye.", StringComparison.Ordinal) == true);

    /// <summary>Logs the ready line once every hosted service (silo, then gateway) has started.</summary>
    public static IServiceCollection AddReadyAnnouncement(this IServiceCollection services) =>
        services.AddHostedService<ReadyAnnouncer>();

    /// <summary>
    /// Registered last, so it starts once the silo and both socket listeners have started (both
    /// sockets accept): logs the ready line and, under systemd (Type=notify), sends READY=1; on
    /// shutdown sends STOPPING=1 before the other services stop.
    /// </summary>
    private sealed partial class ReadyAnnouncer(BusEndpoint bus, Gateway.Ipc.IpcEndpoint ipc, ILogger<ReadyAnnouncer> logger) : IHostedLifecycleService
    {
        public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StartAsync(CancellationToken cancellationToken)
        {
            LogReady(logger, AgentInfo.Version, bus.SocketPath, ipc.SocketPath, Environment.ProcessId);
            Notify($"READY=1\nSTATUS=serving {bus.SocketPath} and {ipc.SocketPath}\nMAINPID={Environment.ProcessId}");
            return Task.CompletedTask;
        }

        public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        /// <summary>Runs before any service's StopAsync: systemd learns at once that the agent is stopping.</summary>
        public Task StoppingAsync(CancellationToken cancellationToken)
        {
            Notify("STOPPING=1\nSTATUS=stopping");
            return Task.CompletedTask;
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        private void Notify(string state)
        {
            if (Systemd.Notify(state) is { } failure)
            {
                LogNotifyFailed(logger, failure);
            }
        }

        [LoggerMessage(EventId = 3, Level = LogLevel.Warning, Message = "systemd notification failed: {Reason}")]
        private static partial void LogNotifyFailed(Microsoft.Extensions.Logging.ILogger logger, string reason);

        [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "daemoneye-agent ready: version {Version}, bus socket {BusSocket}, IPC socket {IpcSocket}, pid {Pid}")]
        private static partial void LogReady(Microsoft.Extensions.Logging.ILogger logger, string version, string busSocket, string ipcSocket, int pid);
    }
}
