// example-collector: a complete DaemonEye collector on one page.
//
// It registers with daemoneye-agent as collector "example" (or the id the agent gives it in
// DAEMONEYE_COLLECTOR_ID), declares what it does, publishes a heartbeat every
// DAEMONEYE_HEARTBEAT_INTERVAL_MS (5 s by default), answers HealthCheck, GetCapabilities and Stop
// (which ends the process with exit code 0), accepts UpdateConfig {"interval_ms": "..."}, and
// publishes a small text event on "events.example.tick" every second.
//
// Run it under the agent by listing it in the agent's configuration:
//     collectors:
//       - id: example
//         executable: /path/to/example-collector.dll
// or by hand next to a running agent: dotnet example-collector.dll
// Watch it: daemoneye-cli subscribe 'events.example.#'   /   daemoneye-cli collectors health example
using System.Globalization;
using System.Text;
using DaemonEye.Client;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

CollectorRuntime.UseInlineSocketCompletions(); // before any socket: answers leave without a thread hand-off
var builder = Host.CreateApplicationBuilder(args);
var ticker = new TickSettings();
builder.Services.AddSingleton(ticker);
builder.Services.AddDaemonEyeCollector(o =>
{
    o.CollectorId = "example";
    o.TaskTypes.Add("example.tick");
    o.EventDomains.Add("events.example.#");
    o.Capacity = 1;
    o.BusyPoll = TimeSpan.FromMicroseconds(200); // a request within 200 µs of the last is read without a wake-up
})
.HandleUpdateConfig((request, call, cancellationToken) =>
{
    if (request.Settings.TryGetValue("interval_ms", out var value))
    {
        ticker.Interval = int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var ms) && ms > 0
            ? TimeSpan.FromMilliseconds(ms)
            : throw new CollectorRpcException(DaemonEye.Protocol.V1.RpcErrorKind.InvalidOperation, $"interval_ms must be a positive integer; got '{value}'");
    }

    return ValueTask.CompletedTask;
});
builder.Services.AddHostedService<Ticker>();
return await builder.Build().RunCollectorAsync();

internal sealed class TickSettings
{
    public TimeSpan Interval { get; set; } = TimeSpan.FromSeconds(1);
}

/// <summary>Publishes "tick N" on events.example.tick every interval.</summary>
internal sealed class Ticker(ICollectorContext collector, TickSettings settings, TimeProvider time) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        for (ulong n = 1; !stoppingToken.IsCancellationRequested; n++)
        {
            await collector.PublishAsync("events.example.tick", Encoding.UTF8.GetBytes($"tick {n}"), "text/plain; charset=utf-8", stoppingToken);
            await Task.Delay(settings.Interval, time, stoppingToken);
        }
    }
}
