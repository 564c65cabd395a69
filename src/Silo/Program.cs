using DaemonEye.Configuration;
using DaemonEye.Coordination;
using DaemonEye.Gateway;
using DaemonEye.Grains;
using DaemonEye.Silo;
using DaemonEye.Supervision;
using Microsoft.Extensions.Hosting;

// daemoneye-agent: the embedded event bus broker in one localhost-only Orleans silo.
//   daemoneye-agent [--config PATH]
// Exit codes: 0 stopped cleanly, 1 failed to start or run, 2 bad command line or configuration.

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

var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [] });
builder.Configuration.Sources.Clear();
try
{
    builder.Configuration.AddDaemonEyeConfiguration(commandLine.ConfigPath);
}
catch (Exception ex) when (ex is FileNotFoundException or InvalidDataException or FormatException)
{
    Console.Error.WriteLine($"daemoneye-agent: {ex.Message}");
    return 2;
}

var configurationErrors = HostingExtensions.ValidateConfiguration(builder.Configuration);
if (configurationErrors.Count > 0)
{
    Console.Error.WriteLine($"daemoneye-agent: the configuration has {configurationErrors.Count} problem(s):");
    configurationErrors.ForEach(e => Console.Error.WriteLine($"  - {e}"));
    return 2;
}

builder.Services.AddAgentLogging(builder.Configuration);
builder.UseOrleans(silo => silo
    .UseSingleLoopbackSilo(builder.Configuration)
    .AddEventBusGrains());
builder.Services.AddEventBusGateway(builder.Configuration);
builder.Services.AddCollectorSupervision(builder.Configuration);
builder.Services.AddCoordination(builder.Configuration);
builder.Services.AddAgentIpc(builder.Configuration);
builder.Services.AddReadyAnnouncement();

using var host = builder.Build();
return await AgentRunner.RunAsync(host);
