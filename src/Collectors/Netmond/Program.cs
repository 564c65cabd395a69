// netmond: the network collector. Dumps the TCP and UDP sockets of its network namespace with
// sock_diag every scan interval and listens to the kernel's socket destroy notifications, and publishes
//   events.network.connection  connections opened (first seen established) and closed (final counters)
//   events.network.listener    listeners started and stopped, with their bind address and exposure
//   events.network.anomaly     built-in checks (an exposed listener outside the allow-list)
//   events.network.coalesced   what the event rate budget did not publish one by one
// and executes the task "network.snapshot" (RPC_OPERATION_EXECUTE_TASK). Settings: netmond --help,
// docs/collectors.md ("netmond"). The agent starts it from its collectors list.
using DaemonEye.Client;
using DaemonEye.Collectors.Netmond;
using DaemonEye.Native.SockDiag;
using DaemonEye.Topics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

if (args is ["--help"] or ["-h"])
{
    Console.WriteLine(NetmondSettings.Usage);
    return 0;
}

var errors = new List<string>();
var settings = NetmondSettings.Parse(args, errors);
if (errors.Count > 0)
{
    Console.Error.WriteLine($"netmond: {errors.Count} problem(s) with the command line:");
    errors.ForEach(e => Console.Error.WriteLine($"  - {e}"));
    Console.Error.WriteLine(NetmondSettings.Usage);
    return 2;
}

var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [] });
builder.Services.AddSingleton(settings);
builder.Services.AddSingleton(_ => SockDiagSocket.Open());
builder.Services.AddSingleton(sp => new SocketTable(
    sp.GetRequiredService<SockDiagSocket>(),
    new SocketOwners(),
    settings,
    sp.GetRequiredService<TimeProvider>(),
    sp.GetRequiredService<IOptions<CollectorOptions>>().Value.CollectorId!));
builder.Services.AddSingleton(sp => new EventBudget(
    sp.GetRequiredService<TimeProvider>(),
    () => settings.EventBudgetPerSecond,
    sp.GetRequiredService<IOptions<CollectorOptions>>().Value.CollectorId!));
builder.Services.AddSingleton<NetworkMonitor>();
builder.Services.AddDaemonEyeCollector(o =>
{
    o.CollectorId = "netmond";
    o.EventDomains.Add(WellKnownTopics.AllNetwork);
    o.Capacity = 1;
})
.HandleTask(NetworkMonitor.SnapshotTaskType, (task, call, ct) => call.Services.GetRequiredService<NetworkMonitor>().ExecuteSnapshotTaskAsync(task, call, ct))
.HandleHealthCheck((call, ct) => call.Services.GetRequiredService<NetworkMonitor>().HealthAsync(call, ct))
.HandleUpdateConfig((request, call, ct) => call.Services.GetRequiredService<NetworkMonitor>().UpdateConfigAsync(request, call, ct));
builder.Services.AddHostedService(sp => sp.GetRequiredService<NetworkMonitor>());
return await builder.Build().RunCollectorAsync();
