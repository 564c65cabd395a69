// fsmond: the filesystem collector. fanotify (FAN_REPORT_DFID_NAME, filesystem marks; inotify where
// fanotify is refused) through src/Native; publishes
//   events.filesystem.{created,modified,deleted,moved,attributes}  changes under the watch globs
//   events.filesystem.integrity  SHA-256 before/after of files under integrity globs
//   events.filesystem.bulk       one process touching more than bulk_threshold files in a window
//   events.filesystem.anomaly    queue overflow, executables in temp dirs, setuid bits, ld.so.preload, drops
// and executes the tasks file.snapshot and file.hash. Settings: fsmond --help, docs/collectors.md ("fsmond").
using DaemonEye.Client;
using DaemonEye.Collectors.Fsmond;
using DaemonEye.Topics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

if (args is ["--help"] or ["-h"])
{
    Console.WriteLine(FsmondSettings.Usage);
    return 0;
}

var errors = new List<string>();
var settings = FsmondSettings.Parse(args, errors);
if (errors.Count > 0)
{
    Console.Error.WriteLine($"fsmond: {errors.Count} problem(s) with the command line:");
    errors.ForEach(e => Console.Error.WriteLine($"  - {e}"));
    Console.Error.WriteLine(FsmondSettings.Usage);
    return 2;
}

var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [] });
builder.Services.AddSingleton(settings);
builder.Services.AddSingleton<FileMonitor>();
builder.Services.AddDaemonEyeCollector(o =>
{
    o.CollectorId = "fsmond";
    o.EventDomains.Add(WellKnownTopics.AllFilesystem);
    o.Capacity = 1;
})
.HandleTask(FileMonitor.SnapshotTaskType, (task, call, ct) => call.Services.GetRequiredService<FileMonitor>().ExecuteSnapshotTaskAsync(task, call, ct))
.HandleTask(FileMonitor.HashTaskType, (task, call, ct) => call.Services.GetRequiredService<FileMonitor>().ExecuteHashTaskAsync(task, call, ct))
.HandleHealthCheck((call, ct) => call.Services.GetRequiredService<FileMonitor>().HealthAsync(call, ct))
.HandleUpdateConfig((request, call, ct) => call.Services.GetRequiredService<FileMonitor>().UpdateConfigAsync(request, call, ct));
builder.Services.AddHostedService(sp => sp.GetRequiredService<FileMonitor>());
return await builder.Build().RunCollectorAsync();
