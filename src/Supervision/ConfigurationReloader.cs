using System.Runtime.InteropServices;
using DaemonEye.Configuration;
using DaemonEye.Logging;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace DaemonEye.Supervision;

/// <summary>What one reload did: refused (with the errors), or applied (with what needs a restart).</summary>
internal sealed record ReloadOutcome(IReadOnlyList<string> Errors, CollectorChanges? Collectors, IReadOnlyList<string> Live, IReadOnlyList<string> NeedRestart)
{
    public bool Applied => Errors.Count == 0;
}

/// <summary>
/// Reloads the agent's configuration file on SIGHUP (systemd's <c>ExecReload</c> sends it). The new
/// file is validated first, with the same validation as start-up and <c>daemoneye-cli config validate</c>;
/// one error and nothing changes (every error is logged). A valid file is applied where it can be live:
/// the <c>collectors</c> list (only the collectors added, removed or changed are touched) and the keys of
/// <see cref="LiveConfiguration.LiveKeys"/> (the log level, per-connection broker limits, RPC timeouts and
/// bounds), which the services read through <c>IOptionsMonitor</c>. Every other key that differs from what
/// the agent runs with is named in the log as needing an agent restart and does not take effect.
/// </summary>
internal sealed partial class ConfigurationReloader(
    Func<IConfigurationRoot> load,
    LiveConfiguration live,
    CollectorSupervisor supervisor,
    ILogger<ConfigurationReloader> logger) : IHostedService, IDisposable
{
    private readonly SemaphoreSlim _gate = new(1, 1);
    private PosixSignalRegistration? _sighup;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _sighup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, context =>
        {
            context.Cancel = true; // SIGHUP reloads; it does not end the agent
            _ = ReloadAsync(CancellationToken.None);
        });
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        _sighup?.Dispose();
        _sighup = null;
        return Task.CompletedTask;
    }

    /// <summary>Reads, validates and applies the configuration file once.</summary>
    public async Task<ReloadOutcome> ReloadAsync(CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken);
        try
        {
            LogReloading(logger);
            IConfigurationRoot next;
            try
            {
                next = load();
            }
            catch (Exception ex) when (ex is FileNotFoundException or InvalidDataException or FormatException or IOException)
            {
                LogRefused(logger, 1);
                LogError(logger, ex.Message);
                return new ReloadOutcome([ex.Message], null, [], []);
            }

            // The same checks as start-up and `config validate`: values, sockets, executables, rules.
            var report = StartupChecks.Run(next, StartupCheckContext.ForThisProcess());
            if (!report.IsValid)
            {
                LogRefused(logger, report.Errors.Count);
                foreach (var error in report.Errors)
                {
                    LogError(logger, error);
                }

                return new ReloadOutcome([.. report.Errors], null, [], []);
            }

            foreach (var warning in report.Warnings)
            {
                LogWarning(logger, warning);
            }

            // What would run: the live keys from the file, the others as the agent started. A live value that
            // contradicts a kept one refuses the whole file rather than half-applying it.
            var effective = ConfigurationValidator.Validate(live.Effective(next));
            if (!effective.IsValid)
            {
                LogRefused(logger, effective.Errors.Count);
                foreach (var error in effective.Errors)
                {
                    LogError(logger, $"{error}, with the keys that need an agent restart kept at their running values");
                }

                return new ReloadOutcome([.. effective.Errors], null, [], []);
            }

            var plan = live.Plan(next);
            foreach (var key in plan.NeedRestart)
            {
                LogNeedsRestart(logger, key);
            }

            // One swap: the services reading IOptionsMonitor see the new live values together.
            live.Apply(next);
            var collectors = await supervisor.ApplyCollectorsAsync(ConfigurationValidator.BindCollectors(next), cancellationToken);
            var summary = collectors.ToString();
            var applied = plan.Live.Count == 0 ? "nothing" : string.Join(", ", plan.Live);
            var restart = plan.NeedRestart.Count == 0 ? "nothing" : string.Join(", ", plan.NeedRestart);
            LogReloaded(logger, summary, applied, restart);
            return new ReloadOutcome([], collectors, plan.Live, plan.NeedRestart);
        }
        finally
        {
            _gate.Release();
        }
    }

    public void Dispose()
    {
        _sighup?.Dispose();
        _gate.Dispose();
    }

    [LoggerMessage(EventId = 4300, Level = LogLevel.Information, Message = "SIGHUP: reloading the configuration")]
    private static partial void LogReloading(ILogger logger);

    [LoggerMessage(EventId = 4301, Level = LogLevel.Error, Message = "Configuration reload refused: the file has {Count} problem(s); nothing was changed")]
    private static partial void LogRefused(ILogger logger, int count);

    [LoggerMessage(EventId = 4302, Level = LogLevel.Error, Message = "Configuration reload: {Error}")]
    private static partial void LogError(ILogger logger, Untrusted error);

    [LoggerMessage(EventId = 4303, Level = LogLevel.Warning, Message = "Configuration reload: {Warning}")]
    private static partial void LogWarning(ILogger logger, Untrusted warning);

    [LoggerMessage(EventId = 4304, Level = LogLevel.Warning, Message = "Configuration reload: {Key} changed; it takes effect only when the agent restarts")]
    private static partial void LogNeedsRestart(ILogger logger, string key);

    [LoggerMessage(EventId = 4305, Level = LogLevel.Information, Message = "Configuration reloaded: collectors {Collectors}; applied live: {Live}; needs an agent restart: {NeedRestart}")]
    private static partial void LogReloaded(ILogger logger, string collectors, string live, string needRestart);
}
