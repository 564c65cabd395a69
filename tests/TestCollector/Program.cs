// test-collector: the SDK's collector host with misbehaviour chosen by flags, for tests that need a
// real collector process. Id, socket and heartbeat interval come from the environment the agent
// sets (DAEMONEYE_COLLECTOR_ID, DAEMONEYE_BROKER__SOCKET_PATH, DAEMONEYE_HEARTBEAT_INTERVAL_MS).
//   --crash-at-start      exit with code 3 at once, before registering
//   --ignore-stop         answer Stop without stopping, and ignore SIGTERM (only SIGKILL ends it)
//   --health-delay-ms N   answer HealthCheck after N ms (the delay ignores the deadline, so a late
//                         answer really is sent); prints "health-check started <correlation id>"
//   --no-heartbeat        never publish a heartbeat
//   --task-type T         declare task:T (repeatable; default test.echo); "process.snapshot" is refused:
//                         snapshots come from procmond only, never from this collector
//   --capacity N          declare capacity:N (default 4)
//   --task-delay-ms N     each task takes N ms
//   --never-answer        accept tasks and never answer them
//   --say TEXT            at start, print "said TEXT on stdout" on stdout and "said TEXT on stderr" on stderr
//   --unhealthy           answer every HealthCheck healthy=false (status "unhealthy on purpose")
// A task's result payload is a google.protobuf.Struct: instance, pid, task_id, in_flight (tasks
// this process was running when the task started, itself included), max_in_flight (the most ever
// at once in this process), executed (tasks started so far) and the task's parameters.
// A task with the parameter fail=TEXT throws InvalidOperationException(TEXT) in its handler (the SDK
// answers ExecutionError).
// UpdateConfig publishes its settings on events.test.config from inside the handler (so the event
// carries the call's correlation root).
using System.Globalization;
using System.Runtime.InteropServices;
using DaemonEye.Client;
using DaemonEye.Protocol.Collector.V1;
using DaemonEye.Protocol.Task.V1;
using DaemonEye.Protocol.V1;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

if (args.Contains("--crash-at-start"))
{
    return 3;
}

foreach (var text in Values(args, "--say"))
{
    Console.Out.WriteLine($"said {text} on stdout");
    Console.Error.WriteLine($"said {text} on stderr");
}

var ignoreStop = args.Contains("--ignore-stop");
var delayAt = Array.IndexOf(args, "--health-delay-ms");
var healthDelay = delayAt >= 0 && delayAt + 1 < args.Length ? TimeSpan.FromMilliseconds(int.Parse(args[delayAt + 1], CultureInfo.InvariantCulture)) : TimeSpan.Zero;

var taskTypes = Values(args, "--task-type").ToList();
if (taskTypes.Count == 0)
{
    taskTypes.Add("test.echo");
}

if (taskTypes.Contains("process.snapshot"))
{
    Console.Error.WriteLine("test-collector: --task-type process.snapshot is refused: process snapshots come from procmond, not from a test collector");
    return 2;
}

var capacity = Values(args, "--capacity").Select(v => uint.Parse(v, CultureInfo.InvariantCulture)).DefaultIfEmpty(4u).Last();
var taskDelay = TimeSpan.FromMilliseconds(Values(args, "--task-delay-ms").Select(v => int.Parse(v, CultureInfo.InvariantCulture)).DefaultIfEmpty(0).Last());
var neverAnswer = args.Contains("--never-answer");
var tasks = new TaskCounters();

CollectorRuntime.UseInlineSocketCompletions(); // as the shipped collectors do
var builder = Host.CreateApplicationBuilder(args);
var collector = builder.Services.AddDaemonEyeCollector(o =>
{
    o.CollectorId = "test";
    foreach (var type in taskTypes)
    {
        o.TaskTypes.Add(type);
    }

    o.EventDomains.Add("events.test.#");
    o.Capacity = capacity;
    o.SendHeartbeats = !args.Contains("--no-heartbeat");
    o.BusyPoll = TimeSpan.FromMicroseconds(200); // as the example collector does
});
collector.HandleUpdateConfig(async (request, call, cancellationToken) =>
{
    var update = new UpdateConfigRequest { Settings = { request.Settings } };
    await call.Collector.PublishAsync("events.test.config", update, cancellationToken);
});
collector.Handle(RpcOperation.ExecuteTask, async (call, cancellationToken) =>
{
    var request = call.Payload(TaskRequest.Parser);
    if (!taskTypes.Contains(request.TaskType))
    {
        throw new CollectorRpcException(RpcErrorKind.InvalidOperation, $"test-collector does not execute task type '{request.TaskType}'; it executes: {string.Join(", ", taskTypes)}");
    }

    var (inFlight, maxInFlight, executed) = tasks.Enter();
    try
    {
        if (neverAnswer)
        {
            await Task.Delay(Timeout.Infinite, cancellationToken);
        }

        if (request.Parameters.TryGetValue("fail", out var failure))
        {
            throw new InvalidOperationException(failure);
        }

        if (taskDelay > TimeSpan.Zero)
        {
            await Task.Delay(taskDelay, TimeProvider.System, cancellationToken);
        }

        var outcome = new Struct();
        outcome.Fields["instance"] = Value.ForString(call.Collector.CollectorId);
        outcome.Fields["pid"] = Value.ForNumber(Environment.ProcessId);
        outcome.Fields["task_id"] = Value.ForString(request.TaskId);
        outcome.Fields["in_flight"] = Value.ForNumber(inFlight);
        outcome.Fields["max_in_flight"] = Value.ForNumber(maxInFlight);
        outcome.Fields["executed"] = Value.ForNumber(executed);
        foreach (var (key, value) in request.Parameters)
        {
            outcome.Fields["param." + key] = Value.ForString(value);
        }

        return new TaskResult
        {
            TaskId = request.TaskId,
            CollectorId = call.Collector.CollectorId,
            Sequence = tasks.NextSequence(),
            PayloadType = Struct.Descriptor.FullName,
            Payload = outcome.ToByteString(),
        }.ToByteString();
    }
    finally
    {
        tasks.Exit();
    }
});

if (args.Contains("--unhealthy"))
{
    collector.HandleHealthCheck((call, cancellationToken) =>
        ValueTask.FromResult(new HealthCheckResponse { Healthy = false, Status = "unhealthy on purpose (--unhealthy)", UptimeMs = (ulong)call.Collector.Uptime.TotalMilliseconds }));
}
else if (healthDelay > TimeSpan.Zero)
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

static IEnumerable<string> Values(string[] args, string flag)
{
    for (var i = 0; i + 1 < args.Length; i++)
    {
        if (args[i] == flag)
        {
            yield return args[i + 1];
        }
    }
}

/// <summary>Tasks running in this process right now, the most ever at once, and result numbering.</summary>
internal sealed class TaskCounters
{
    private readonly Lock _gate = new();
    private int _inFlight;
    private int _max;
    private int _executed;
    private ulong _sequence;

    public (int InFlight, int Max, int Executed) Enter()
    {
        lock (_gate)
        {
            _inFlight++;
            _executed++;
            _max = Math.Max(_max, _inFlight);
            return (_inFlight, _max, _executed);
        }
    }

    public void Exit()
    {
        lock (_gate)
        {
            _inFlight--;
        }
    }

    public ulong NextSequence()
    {
        lock (_gate)
        {
            return ++_sequence;
        }
    }
}

/// <summary>A host lifetime that does not react to signals.</summary>
internal sealed class NoSignalsLifetime : IHostLifetime
{
    public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
