using DaemonEye.Configuration;
using DaemonEye.Coordination;
using DaemonEye.Gateway;
using DaemonEye.Grains;
using DaemonEye.Silo;
using DaemonEye.Supervision;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;

// daemoneye-agent: the embedded event bus broker in one Orleans silo that opens no socket (ClosedSilo).
//   daemoneye-agent [--config PATH] [--dashboard]
// Exit codes: 0 stopped cleanly, 1 failed to start or run, 2 bad command line or configuration.

// Before the runtime's threads allocate much: resident memory stays flat while the JIT recompiles.
MallocArenas.Limit();

if (!AgentCommandLine.TryParse(args, out var commandLine, out var usageError))
{
    Console.Error.WriteLine($"daemoneye-agent: {usageError}");
    Console.Error.WriteLine(AgentCommandLine.Usage);
    return 2;
}

if (commandLine.ShowHelp)
{
    Console.WriteLine(AgentCommandLine.Usage);
    return 0;
}

var configuration = new ConfigurationManager();
try
{
    configuration.AddDaemonEyeConfiguration(commandLine.ConfigPath);
}
catch (Exception ex) when (ConfigurationLoader.DescribeLoadFailure(ex, commandLine.ConfigPath) is { } failure)
{
    Console.Error.WriteLine($"daemoneye-agent: {failure}");
    return 2;
}

commandLine.ApplyTo(configuration);

// The same checks as `daemoneye-cli config validate`: values, socket directories, collector executables, rules.
var report = StartupChecks.Run(configuration, StartupCheckContext.ForThisProcess());
if (!report.IsValid)
{
    Console.Error.WriteLine($"daemoneye-agent: the configuration has {report.Errors.Count} problem(s):");
    report.Errors.ToList().ForEach(e => Console.Error.WriteLine($"  - {e}"));
    return 2;
}

// The services read a snapshot of the checked configuration, which a SIGHUP reload replaces in one step.
var live = new LiveConfiguration(configuration);
var liveConfiguration = new ConfigurationManager();
liveConfiguration.Sources.Add(live);

// A generic host; with the Orleans dashboard on, a slim web application listening on 127.0.0.1 only.
var builder = Dashboard.CreateBuilder(liveConfiguration);
builder.Services.AddAgentLogging(builder.Configuration);
builder.Services.AddConfigurationWarnings(report);
builder.UseOrleans(silo => silo
    .UseClosedSingleSilo()
    .AddEventBusGrains()
    .AddDashboardIfEnabled(builder.Configuration));
builder.Services.AddEventBusGateway(builder.Configuration);
builder.Services.AddCollectorSupervision(builder.Configuration);
builder.Services.AddConfigurationReload(() =>
{
    var reloaded = new ConfigurationManager();
    reloaded.AddDaemonEyeConfiguration(commandLine.ConfigPath);
    commandLine.ApplyTo(reloaded);
    return reloaded;
}, live);
builder.Services.AddCoordination(builder.Configuration);
builder.Services.AddAgentIpc(builder.Configuration);
builder.Services.AddPrometheusMetrics(builder.Configuration);
builder.Services.AddReadyAnnouncement();

using var host = builder switch
{
    HostApplicationBuilder generic => generic.Build(),
    WebApplicationBuilder web => web.Build(),
    _ => throw new InvalidOperationException($"unexpected host builder {builder.GetType()}"),
};
Dashboard.MapIfEnabled(host);
return await AgentRunner.RunAsync(host, configuration);
