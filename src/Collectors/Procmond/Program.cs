// procmond: the process collector. Takes process events from the kernel (the proc connector, as
// root; otherwise it polls), reconciles with a /proc scan every scan interval, and publishes
//   events.process.lifecycle  start, exit (status, lifetime) and exec of processes
//   events.process.anomaly    checks that fired (volatile exec, memfd, uid 0, ptrace, ...)
//   events.process.metadata   CPU %, RSS, threads of processes whose values moved past a threshold
//   events.process.tree       forks and re-parenting
//   events.process.integrity  a running process's executable replaced or deleted on disk
//   events.process.batch      the full snapshot, at start and on request
// and executes the task "process.snapshot" (RPC_OPERATION_EXECUTE_TASK). Settings: procmond --help,
// docs/collectors.md ("procmond"). The agent starts it from its collectors list.
using DaemonEye.Client;
using DaemonEye.Collectors.Procmond;
using DaemonEye.Collectors.Procmond.Proc;
using DaemonEye.Collectors.Procmond.Realtime;
using DaemonEye.Native.Netlink;
using DaemonEye.Topics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

if (args is ["--help"] or ["-h"])
{
    Console.WriteLine(ProcmondSettings.Usage);
    return 0;
}

var errors = new List<string>();
var settings = ProcmondSettings.Parse(args, errors);
if (errors.Count > 0)
{
    Console.Error.WriteLine($"procmond: {errors.Count} problem(s) with the command line:");
    errors.ForEach(e => Console.Error.WriteLine($"  - {e}"));
    Console.Error.WriteLine(ProcmondSettings.Usage);
    return 2;
}

var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [] });
builder.Services.AddSingleton(settings);
builder.Services.AddSingleton(_ => new ExecutableHasher(settings.HashQueueCapacity, settings.HashCacheEntries, () => settings.HashMaxFileBytes));
builder.Services.AddSingleton(sp => new ProcessTable(
    new ProcReader(),
    sp.GetRequiredService<ExecutableHasher>(),
    new UserDirectory(),
    settings,
    sp.GetRequiredService<TimeProvider>(),
    sp.GetRequiredService<IOptions<CollectorOptions>>().Value.CollectorId!));
builder.Services.AddSingleton(sp => new AnomalyChecks(settings, sp.GetRequiredService<IOptions<CollectorOptions>>().Value.CollectorId!));
builder.Services.AddSingleton<OpenProcConnector>(bytes => ProcConnector.Open(bytes));
builder.Services.AddSingleton<ProcessMonitor>();
builder.Services.AddDaemonEyeCollector(o =>
{
    o.CollectorId = "procmond";
    o.EventDomains.Add(WellKnownTopics.AllProcess);
    o.Capacity = 1;
})
.HandleTask(ProcessMonitor.SnapshotTaskType, (task, call, ct) => call.Services.GetRequiredService<ProcessMonitor>().ExecuteSnapshotTaskAsync(task, call, ct))
.HandleHealthCheck((call, ct) => call.Services.GetRequiredService<ProcessMonitor>().HealthAsync(call, ct))
.HandleUpdateConfig((request, call, ct) => call.Services.GetRequiredService<ProcessMonitor>().UpdateConfigAsync(request, call, ct))
.AddDiagnostics((diagnostics, services) => services.GetRequiredService<ProcessMonitor>().Describe(diagnostics))
.ReportSettings(services => services.GetRequiredService<ProcmondSettings>().Describe());
builder.Services.AddHostedService(sp => sp.GetRequiredService<ProcessMonitor>());
return await builder.Build().RunCollectorAsync();
