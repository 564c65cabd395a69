using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using DaemonEye.Client;
using DaemonEye.Protocol.Ipc.V1;

namespace DaemonEye.Cli.Commands;

/// <summary>
/// <c>bench tasks</c>: tasks dispatched by the agent's coordinator to the collector instances that
/// execute the type and aggregated, as <c>task run</c> submits them (IPC <c>task_run</c>), with
/// <c>--concurrency</c> tasks in flight. The agent answers one request at a time per IPC connection,
/// so each task in flight has its own connection. Latency is per task, from the request to its
/// aggregated result. A probe task and a short unrecorded warm-up run first.
/// </summary>
internal static class BenchTasksCommand
{
    public static Command Build(CliContext context)
    {
        var type = new Option<string>("--type") { Description = "The task type, e.g. test.echo or process.snapshot", Required = true };
        var parameters = new Option<string[]>("--param") { Description = "A task parameter key=value (repeatable)", AllowMultipleArgumentsPerToken = false };
        var concurrency = new Option<int>("--concurrency") { Description = "Tasks in flight at once, one IPC connection each", DefaultValueFactory = _ => 16 };
        var count = new Option<long>("--count") { Description = "Tasks to run and measure", DefaultValueFactory = _ => 10_000 };
        var warmup = new Option<int>("--warmup") { Description = "Unrecorded tasks before the measurement", DefaultValueFactory = _ => 200 };
        var timeout = new Option<double>("--timeout") { Description = "Timeout of each task, seconds", DefaultValueFactory = _ => 5 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object with the results" };
        var command = new Command("tasks", "Tasks dispatched to collector instances and aggregated: tasks/s and latency");
        foreach (var option in new Option[] { type, parameters, concurrency, count, warmup, timeout, json })
        {
            command.Options.Add(option);
        }

        command.SetAction((parse, cancellationToken) => AgentConnection.RunAsync(context, async () =>
        {
            var settings = new Settings(parse.GetValue(type)!, new Dictionary<string, string>(StringComparer.Ordinal), parse.GetValue(concurrency), parse.GetValue(count), parse.GetValue(warmup), TimeSpan.FromSeconds(parse.GetValue(timeout)));
            var problems = settings.Validate().ToList();
            foreach (var p in parse.GetValue(parameters) ?? [])
            {
                var eq = p.IndexOf('=', StringComparison.Ordinal);
                if (eq <= 0)
                {
                    problems.Add($"--param '{p}' is not key=value");
                    continue;
                }

                settings.Parameters[p[..eq]] = p[(eq + 1)..];
            }

            if (problems.Count > 0)
            {
                foreach (var problem in problems)
                {
                    context.Error.WriteLine($"error: {problem}");
                }

                return CliApplication.Invalid;
            }

            var path = AgentIpcClient.ResolveSocketPath(parse.GetValue(context.Config));
            var clients = new List<AgentIpcClient>();
            try
            {
                try
                {
                    for (var i = 0; i < settings.Concurrency; i++)
                    {
                        clients.Add(await AgentIpcClient.ConnectAsync(path, cancellationToken));
                    }
                }
                catch (BusConnectionException e)
                {
                    context.Error.WriteLine($"error: {e.Message}");
                    return CliApplication.Unavailable;
                }

                // One task first: an unknown type or no instance is reported, not benchmarked.
                var probe = await clients[0].SendAsync(settings.Request(), cancellationToken);
                if (probe.Error is { } error)
                {
                    context.Error.WriteLine($"{CollectorCommands.KindName(error.Kind)}: {error.Message}");
                    return CliApplication.No;
                }

                if (probe.TaskRun.Partial)
                {
                    context.Error.WriteLine($"error: the probe task was partial: {string.Join("; ", probe.TaskRun.Missing.Select(m => m.Reason))}");
                    return CliApplication.No;
                }

                await RunAsync(clients, settings, settings.Warmup, cancellationToken);
                var progress = new BenchProgress();
                var result = await progress.ShowAsync(context, "tasks", settings.Count, null, RunAsync(clients, settings, settings.Count, cancellationToken, progress));
                if (parse.GetValue(json))
                {
                    context.Output.WriteLine(result.ToJson(settings));
                }
                else
                {
                    result.Print(context.Output, settings);
                }

                if (result.Errors.Count > 0)
                {
                    context.Error.WriteLine($"error: {result.Errors.Values.Sum()} of {result.Tasks} task(s) failed: {string.Join(", ", result.Errors.Select(e => $"{e.Key} {e.Value}"))}");
                    return CliApplication.No;
                }

                return CliApplication.Ok;
            }
            finally
            {
                foreach (var client in clients)
                {
                    await client.DisposeAsync();
                }
            }
        }));
        return command;
    }

    private static async Task<Result> RunAsync(List<AgentIpcClient> clients, Settings settings, long tasks, CancellationToken cancellationToken, BenchProgress? progress = null)
    {
        var remaining = tasks;
        var state = clients.Select(_ => new Worker()).ToArray();
        if (progress is not null)
        {
            progress.Done = () => state.Sum(w => w.Tasks);
        }

        var started = Stopwatch.GetTimestamp();
        var workers = clients.Select((client, i) => Task.Run(async () =>
        {
            var worker = state[i];
            while (Interlocked.Decrement(ref remaining) >= 0 && !cancellationToken.IsCancellationRequested)
            {
                var sent = Stopwatch.GetTimestamp();
                var response = await client.SendAsync(settings.Request(), cancellationToken);
                var elapsed = Stopwatch.GetTimestamp() - sent;
                worker.Tasks++;
                var kind = response.Error is { } error ? CollectorCommands.KindName(error.Kind) : response.TaskRun.Partial ? "Partial" : null;
                if (kind is not null)
                {
                    worker.Errors[kind] = worker.Errors.GetValueOrDefault(kind) + 1;
                    continue;
                }

                worker.Histogram.Record((long)(elapsed * (1e9 / Stopwatch.Frequency)));
                worker.Redistributions += response.TaskRun.Redistributions;
                foreach (var r in response.TaskRun.Results)
                {
                    worker.Instances[r.CollectorId] = worker.Instances.GetValueOrDefault(r.CollectorId) + 1;
                }
            }

            return worker;
        }, CancellationToken.None)).ToArray();
        var done = await Task.WhenAll(workers);
        var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        var histogram = new LatencyHistogram();
        var errors = new SortedDictionary<string, long>(StringComparer.Ordinal);
        var instances = new SortedDictionary<string, long>(StringComparer.Ordinal);
        foreach (var w in done)
        {
            histogram.Merge(w.Histogram);
            foreach (var (kind, n) in w.Errors)
            {
                errors[kind] = errors.GetValueOrDefault(kind) + n;
            }

            foreach (var (id, n) in w.Instances)
            {
                instances[id] = instances.GetValueOrDefault(id) + n;
            }
        }

        return new Result(done.Sum(w => w.Tasks), seconds, histogram, errors, instances, done.Sum(w => w.Redistributions));
    }

    private sealed class Worker
    {
        public LatencyHistogram Histogram { get; } = new();

        public Dictionary<string, long> Errors { get; } = new(StringComparer.Ordinal);

        public Dictionary<string, long> Instances { get; } = new(StringComparer.Ordinal);

        public long Tasks { get; set; }

        public long Redistributions { get; set; }
    }

    private sealed record Settings(string TaskType, Dictionary<string, string> Parameters, int Concurrency, long Count, int Warmup, TimeSpan Timeout)
    {
        public IpcRequest Request()
        {
            var run = new TaskRunRequest { TaskType = TaskType, TimeoutMs = (uint)Math.Max(1, Timeout.TotalMilliseconds) };
            foreach (var (key, value) in Parameters)
            {
                run.Parameters[key] = value;
            }

            return new IpcRequest { TaskRun = run };
        }

        public IEnumerable<string> Validate()
        {
            if (TaskType.Length == 0)
            {
                yield return "--type must not be empty";
            }

            if (Concurrency is < 1 or > 4096)
            {
                yield return $"--concurrency is {Concurrency}; allowed: 1 to 4096";
            }

            if (Count < 1)
            {
                yield return $"--count is {Count}; it must be at least 1";
            }

            if (Warmup < 0)
            {
                yield return $"--warmup is {Warmup}; it must be 0 or more";
            }

            if (!(Timeout > TimeSpan.Zero && Timeout <= TimeSpan.FromDays(1)))
            {
                yield return "--timeout must be more than 0 and at most 86400 seconds";
            }
        }
    }

    private sealed record Result(long Tasks, double Seconds, LatencyHistogram Latency, SortedDictionary<string, long> Errors, SortedDictionary<string, long> Instances, long Redistributions)
    {
        private double PerSecond => Seconds > 0 ? Tasks / Seconds : 0;

        public void Print(TextWriter output, Settings settings)
        {
            output.WriteLine($"tasks: {settings.TaskType}, concurrency {settings.Concurrency} (one IPC connection each)");
            output.WriteLine($"  tasks      {Tasks,14:N0}  {PerSecond,14:N0} tasks/s  ({Seconds:0.000} s)");
            output.WriteLine($"  errors     {Errors.Values.Sum(),14:N0}{(Errors.Count > 0 ? "  " + string.Join(", ", Errors.Select(e => $"{e.Key} {e.Value}")) : "")}");
            output.WriteLine($"  latency    {Latency.Summary()}");
            output.WriteLine($"  results    {string.Join(", ", Instances.Select(i => $"{i.Key} {i.Value:N0}"))}; redistributed {Redistributions:N0}");
        }

        public string ToJson(Settings settings)
        {
            using var buffer = new MemoryStream();
            using (var w = new Utf8JsonWriter(buffer))
            {
                w.WriteStartObject();
                w.WriteString("task_type", settings.TaskType);
                w.WriteNumber("concurrency", settings.Concurrency);
                w.WriteNumber("tasks", Tasks);
                w.WriteNumber("ok", Tasks - Errors.Values.Sum());
                w.WriteNumber("seconds", Math.Round(Seconds, 6));
                w.WriteNumber("tasks_per_sec", Math.Round(PerSecond));
                Latency.WriteMicros(w);
                w.WriteStartObject("errors");
                foreach (var (kind, n) in Errors)
                {
                    w.WriteNumber(kind, n);
                }

                w.WriteEndObject();
                w.WriteStartObject("results_by_instance");
                foreach (var (id, n) in Instances)
                {
                    w.WriteNumber(id, n);
                }

                w.WriteEndObject();
                w.WriteNumber("redistributions", Redistributions);
                w.WriteEndObject();
            }

            return System.Text.Encoding.UTF8.GetString(buffer.ToArray());
        }
    }
}
