// test-collector: the SDK's collector host with misbehaviour chosen by flags, for tests that need a
// real collector process. Id, socket and heartbeat interval come from the environment the agent
// sets (DAEMONEYE_COLLECTOR_ID, DAEMONEYE_BROKER__SOCKET_PATH, DAEMONEYE_HEARTBEAT_INTERVAL_MS).
//   --crash-at-start      exit with code 3 at once, before registering
//   --ignore-stop         answer Stop without stopping, and ignore SIGTERM (only SIGKILL ends it)
//   --health-delay-ms N   answer HealthCheck after N ms (the delay ignores the deadline, so a late
//                         answer really is sent); prints "health-check started <correlation id>"
//   --no-heartbeat        never publish a heartbeat
// UpdateConfig publishes its settings on events.test.config from inside the handler (so the event
// carries the call's correlation root).
using System.Globalization;
using System.Runtime.InteropServices;
using DaemonEye.Client;
using DaemonEye.Protocol.Collector.V1;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

if (args.Contains("--crash-at-start"))
{
    return 3;
}

var ignoreStop = args.Contains("--ignore-stop");
var delayAt = Array.IndexOf(args, "--health-delay-ms");
var healthDelay = delayAt >= 0 && delayAt + 1 < args.Length ? TimeSpan.FromMilliseconds(int.Parse(args[delayAt + 1], CultureInfo.InvariantCulture)) : TimeSpan.Zero;

var builder = Host.CreateApplicationBuilder(args);
var collector = builder.Services.AddDaemonEyeCollector(o =>
{
    o.CollectorId = "test";
    o.TaskTypes.Add("test.echo");
    o.EventDomains.Add("events.test.#");
    o.Capacity = 4;
    o.SendHeartbeats = !args.Contains("--no-heartbeat");
});
collector.HandleUpdateConfig(async (request, call, cancellationToken) =>
{
    var update = new UpdateConfigRequest { Settings = { request.Settings } };
    await call.Collector.PublishAsync("events.test.config", update, cancellationToken);
});
if (healthDelay > TimeSpan.Zero)
{
    collector.HandleHealthCheck(async (call, cancellationToken) =>
    {
        // The marker tells a test the call has reached the collector.
        Console.WriteLine($"health-check started {call.Correlation.CorrelationId}");
        await Task.Delay(healthDelay, TimeProvider.System, CancellationToken.None);
        return new HealthCheckResponse { Healthy = true, Status = "slow", UptimeMs = (ulong)call.Collector.Uptime.TotalMilliseconds };
    });
}

PosixSignalRegistration? ignoreTerm = null;
if (ignoreStop)
{
    collector.HandleStop((request, call, cancellationToken) => ValueTask.CompletedTask);
    // No console lifetime: it would stop the host on SIGTERM. The registration cancels the default.
    builder.Services.AddSingleton<IHostLifetime, NoSignalsLifetime>();
    ignoreTerm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context => context.Cancel = true);
}

using (ignoreTerm)
{
    return await builder.Build().RunCollectorAsync();
}

/// <summary>A host lifetime that does not react to signals.</summary>
internal sealed class NoSignalsLifetime : IHostLifetime
{
    public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
