using System.Runtime.InteropServices;
using DaemonEye.Configuration;
using DaemonEye.Logging;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace DaemonEye.Supervision;

/// <summary>What one reload did: refused (with the errors), or applied (with what needs a restart).</summary>
internal sealed record ReloadOutcome(IReadOnlyList<string> Errors, CollectorChanges? Collectors, IReadOnlyList<string> NeedRestart)
{
    public bool Applied => Errors.Count == 0;
}

/// <summary>
/// Reloads the agent's configuration file on SIGHUP (systemd's <c>ExecReload</c> sends it). The new
/// file is validated first, with the same validation as start-up and <c>daemoneye-cli config validate</c>;
/// one error and nothing changes (every error is logged). A valid file is applied where it can be live:
/// the <c>collectors</c> list (only the collectors added, removed or changed are touched). Changes to
/// any other section are named in the log as needing an agent restart; they do not take effect.
/// </summary>
internal sealed partial class ConfigurationReloader(
    Func<IConfigurationRoot> load,
    IConfiguration startup,
    CollectorSupervisor supervisor,
    ILogger<ConfigurationReloader> logger) : IHostedService, IDisposable
{
    private readonly SemaphoreSlim _gate = new(1, 1);
    private PosixSignalRegistration? _sighup;
    private IConfiguration _current = startup;

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
                return new ReloadOutcome([ex.Message], null, []);
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

                return new ReloadOutcome([.. report.Errors], null, []);
            }

            foreach (var warning in report.Warnings)
            {
                LogWarning(logger, warning);
            }

            var needRestart = ConfigurationValidator.Sections
                .Where(s => s.Name != CollectorDefinition.SectionName && !SameSection(_current, next, s.Name))
                .Select(s => s.Name)
                .ToList();
            foreach (var section in needRestart)
            {
                LogNeedsRestart(logger, section);
            }

            var collectors = await supervisor.ApplyCollectorsAsync(ConfigurationValidator.BindCollectors(next), cancellationToken);
            _current = next;
            var summary = collectors.ToString();
            var restart = needRestart.Count == 0 ? "nothing" : string.Join(", ", needRestart);
            LogReloaded(logger, summary, restart);
            return new ReloadOutcome([], collectors, needRestart);
        }
        finally
        {
            _gate.Release();
        }
    }

    private static bool SameSection(IConfiguration a, IConfiguration b, string section)
    {
        static Dictionary<string, string?> Flat(IConfiguration c, string name) =>
            c.GetSection(name).AsEnumerable().Where(kv => kv.Value is not null).ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.OrdinalIgnoreCase);

        var x = Flat(a, section);
        var y = Flat(b, section);
        return x.Count == y.Count && x.All(kv => y.TryGetValue(kv.Key, out var v) && v == kv.Value);
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

    [LoggerMessage(EventId = 4304, Level = LogLevel.Warning, Message = "Configuration reload: section {Section} changed; it takes effect only when the agent restarts")]
    private static partial void LogNeedsRestart(ILogger logger, string section);

    [LoggerMessage(EventId = 4305, Level = LogLevel.Information, Message = "Configuration reloaded: collectors {Collectors}; needs an agent restart: {NeedRestart}")]
    private static partial void LogReloaded(ILogger logger, string collectors, string needRestart);
}
