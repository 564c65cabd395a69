using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using DaemonEye.Client;
using DaemonEye.Protocol.V1;

namespace DaemonEye.Cli.Commands;

/// <summary>
/// <c>bench rpc</c>: HealthCheck round trips through the agent's bus to a collector process, from
/// <c>--connections</c> BusClients with <c>--concurrency</c> calls in flight in all. Latency is per
/// call, from CallAsync to its answer. A short unrecorded warm-up runs first.
/// </summary>
internal static class BenchRpcCommand
{
    /// <summary>The caller's busy-poll window unless --busy-poll-us says otherwise: the agent's own default (broker.busy_poll_microseconds).</summary>
    private const int DefaultBusyPollMicroseconds = 200;

    public static Command Build(CliContext context)
    {
        var collector = new Option<string>("--collector") { Description = "The collector to call", Required = true };
        var concurrency = new Option<int>("--concurrency") { Description = "Calls in flight at once, over all connections", DefaultValueFactory = _ => 32 };
        var connections = new Option<int>("--connections") { Description = "Caller connections (BusClients)", DefaultValueFactory = _ => 1 };
        var requests = new Option<long>("--requests") { Description = "Calls to make in all (ignored with --duration)", DefaultValueFactory = _ => 100_000 };
        var duration = new Option<double?>("--duration") { Description = "Run for this many seconds instead of a fixed number of calls" };
        var warmup = new Option<int>("--warmup") { Description = "Unrecorded calls before the measurement", DefaultValueFactory = _ => 2_000 };
        var timeout = new Option<double>("--timeout") { Description = "Timeout of each call, seconds", DefaultValueFactory = _ => 5 };
        var completions = new Option<string>("--completions")
        {
            Description = "Where answers resume the calling loop: 'reader' (on the bus client's reader, with the runtime's inline socket completions; the calls they trigger leave in one send) or 'thread-pool' (the SDK's defaults)",
            DefaultValueFactory = _ => "reader",
        };
        completions.AcceptOnlyFromAmong("reader", "thread-pool");
        var busyPoll = new Option<int>("--busy-poll-us")
        {
            Description = $"After each bus event, keep this process's socket thread polling this many microseconds before it sleeps (0 to {(int)Networking.SocketReactor.MaxBusyPoll.TotalMicroseconds}; 0: off), as CollectorOptions.BusyPoll sets it for a collector",
            DefaultValueFactory = _ => DefaultBusyPollMicroseconds,
        };
        var json = new Option<bool>("--json") { Description = "Print one JSON object with the results" };
        var command = new Command("rpc", "HealthCheck RPC round trips to a collector: requests/s and latency");
        foreach (var option in new Option[] { collector, concurrency, connections, requests, duration, warmup, timeout, completions, busyPoll, json })
        {
            command.Options.Add(option);
        }

        command.SetAction((parse, cancellationToken) => AgentConnection.RunAsync(context, async () =>
        {
            var settings = new Settings(parse.GetValue(collector)!, parse.GetValue(concurrency), parse.GetValue(connections), parse.GetValue(requests),
                parse.GetValue(duration) is { } d ? TimeSpan.FromSeconds(d) : null, parse.GetValue(warmup), TimeSpan.FromSeconds(parse.GetValue(timeout)),
                OnReader: parse.GetValue(completions) == "reader", BusyPollMicroseconds: parse.GetValue(busyPoll));
            var problems = settings.Validate().ToList();
            if (problems.Count > 0)
            {
                foreach (var problem in problems)
                {
                    context.Error.WriteLine($"error: {problem}");
                }

                return CliApplication.Invalid;
            }

            if (settings.OnReader)
            {
                // Before this process's first socket: reads then complete on the socket event thread
                // too, so an answer is read, handled and the next call sent with no hand-off at all.
                CollectorRuntime.UseInlineSocketCompletions();
            }

            // The caller's side of the round trip: this process's one reactor serves every BusClient below.
            Networking.SocketReactor.Shared.BusyPoll = TimeSpan.FromMicroseconds(settings.BusyPollMicroseconds);
            var clients = new List<BusClient>();
            try
            {
                for (var i = 0; i < settings.Connections; i++)
                {
                    var options = AgentConnection.Options(context, parse, $"-rpc{i}");
                    // The loop below never blocks, so it may run on the reader (see BusClientOptions.CompleteCallsOnReader).
                    options.CompleteCallsOnReader = settings.OnReader;
                    var client = await AgentConnection.ConnectAsync(context, options, cancellationToken);
                    if (client is null)
                    {
                        return CliApplication.Unavailable;
                    }

                    clients.Add(client);
                }

                // One call first: a wrong id or a collector that cannot answer is reported, not benchmarked.
                var probe = await clients[0].CallAsync(settings.Collector, RpcOperation.HealthCheck, timeout: settings.Timeout, cancellationToken: cancellationToken);
                if (probe.Status != RpcStatus.Ok)
                {
                    context.Error.WriteLine($"{CollectorCommands.KindName(probe.Error?.Kind ?? RpcErrorKind.Unspecified)}: {probe.Error?.Message}");
                    return CliApplication.No;
                }

                await RunAsync(clients, settings, settings.Warmup, null, record: false, cancellationToken);
                var progress = new BenchProgress();
                var result = await progress.ShowAsync(context, "calls", settings.Duration is null ? settings.Requests : 0, settings.Duration, RunAsync(clients, settings, settings.Requests, settings.Duration, record: true, cancellationToken, progress));
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
                    context.Error.WriteLine($"error: {result.Errors.Values.Sum()} of {result.Calls} call(s) failed: {string.Join(", ", result.Errors.Select(e => $"{e.Key} {e.Value}"))}");
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

    private static async Task<Result> RunAsync(List<BusClient> clients, Settings settings, long calls, TimeSpan? duration, bool record, CancellationToken cancellationToken, BenchProgress? progress = null)
    {
        var remaining = calls;
        var state = Enumerable.Range(0, settings.Concurrency).Select(_ => new Worker()).ToArray();
        if (progress is not null)
        {
            progress.Done = () => state.Sum(w => w.Calls);
        }

        var started = Stopwatch.GetTimestamp();
        var until = duration is { } d ? started + (long)(d.TotalSeconds * Stopwatch.Frequency) : long.MaxValue;
        var workers = Enumerable.Range(0, settings.Concurrency).Select(i => Task.Run(async () =>
        {
            var client = clients[i % clients.Count];
            var worker = state[i];
            while ((duration is null ? Interlocked.Decrement(ref remaining) >= 0 : Stopwatch.GetTimestamp() < until) && !cancellationToken.IsCancellationRequested)
            {
                var sent = Stopwatch.GetTimestamp();
                var response = await client.CallAsync(settings.Collector, RpcOperation.HealthCheck, timeout: settings.Timeout, cancellationToken: cancellationToken);
                var elapsed = Stopwatch.GetTimestamp() - sent;
                worker.Calls++;
                if (response.Status == RpcStatus.Ok)
                {
                    if (record)
                    {
                        worker.Histogram.Record((long)(elapsed * (1e9 / Stopwatch.Frequency)));
                    }
                }
                else
                {
                    var kind = CollectorCommands.KindName(response.Error?.Kind ?? RpcErrorKind.Unspecified);
                    worker.Errors[kind] = worker.Errors.GetValueOrDefault(kind) + 1;
                }
            }

            return worker;
        }, CancellationToken.None)).ToArray();
        var done = await Task.WhenAll(workers);
        var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        var histogram = new LatencyHistogram();
        var errors = new SortedDictionary<string, long>(StringComparer.Ordinal);
        foreach (var w in done)
        {
            histogram.Merge(w.Histogram);
            foreach (var (kind, n) in w.Errors)
            {
                errors[kind] = errors.GetValueOrDefault(kind) + n;
            }
        }

        return new Result(done.Sum(w => w.Calls), seconds, histogram, errors);
    }

    private sealed class Worker
    {
        public LatencyHistogram Histogram { get; } = new();

        public Dictionary<string, long> Errors { get; } = new(StringComparer.Ordinal);

        public long Calls { get; set; }
    }

    private sealed record Settings(string Collector, int Concurrency, int Connections, long Requests, TimeSpan? Duration, int Warmup, TimeSpan Timeout, bool OnReader, int BusyPollMicroseconds)
    {
        public IEnumerable<string> Validate()
        {
            string? problem = null;
            try
            {
                BusClient.RpcTarget(Collector);
            }
            catch (ArgumentException e)
            {
                problem = $"--collector: {e.Message}";
            }

            if (problem is not null)
            {
                yield return problem;
            }

            if (!Networking.SocketReactor.IsValidBusyPoll(TimeSpan.FromMicroseconds(BusyPollMicroseconds)))
            {
                yield return $"--busy-poll-us is {BusyPollMicroseconds}; it must be 0 (off) to {Networking.SocketReactor.MaxBusyPoll.TotalMicroseconds}";
            }

            if (Concurrency < 1)
            {
                yield return $"--concurrency is {Concurrency}; it must be at least 1";
            }

            if (Connections < 1 || Connections > Concurrency)
            {
                yield return $"--connections is {Connections}; it must be 1 to --concurrency ({Concurrency})";
            }

            if (Duration is null && Requests < 1)
            {
                yield return $"--requests is {Requests}; it must be at least 1";
            }

            if (Duration is { } d && d <= TimeSpan.Zero)
            {
                yield return "--duration must be positive";
            }

            if (Warmup < 0)
            {
                yield return $"--warmup is {Warmup}; it must be 0 or more";
            }

            if (Timeout <= TimeSpan.Zero)
            {
                yield return "--timeout must be positive";
            }
        }
    }

    private sealed record Result(long Calls, double Seconds, LatencyHistogram Latency, SortedDictionary<string, long> Errors)
    {
        private double PerSecond => Seconds > 0 ? Calls / Seconds : 0;

        public void Print(TextWriter output, Settings settings)
        {
            output.WriteLine($"rpc: HealthCheck -> {settings.Collector}, concurrency {settings.Concurrency} over {settings.Connections} connection(s), answers resumed on the {(settings.OnReader ? "reader" : "thread pool")}, busy poll {settings.BusyPollMicroseconds} µs");
            output.WriteLine($"  calls      {Calls,14:N0}  {PerSecond,14:N0} requests/s  ({Seconds:0.000} s)");
            output.WriteLine($"  errors     {Errors.Values.Sum(),14:N0}{(Errors.Count > 0 ? "  " + string.Join(", ", Errors.Select(e => $"{e.Key} {e.Value}")) : "")}");
            output.WriteLine($"  latency    {Latency.Summary()}");
        }

        public string ToJson(Settings settings)
        {
            using var buffer = new MemoryStream();
            using (var w = new Utf8JsonWriter(buffer))
            {
                w.WriteStartObject();
                w.WriteString("collector", settings.Collector);
                w.WriteNumber("concurrency", settings.Concurrency);
                w.WriteNumber("connections", settings.Connections);
                w.WriteString("completions", settings.OnReader ? "reader" : "thread-pool");
                w.WriteNumber("busy_poll_us", settings.BusyPollMicroseconds);
                w.WriteNumber("requests", Calls);
                w.WriteNumber("ok", Calls - Errors.Values.Sum());
                w.WriteNumber("seconds", Math.Round(Seconds, 6));
                w.WriteNumber("requests_per_sec", Math.Round(PerSecond));
                Latency.WriteMicros(w);
                w.WriteStartObject("errors");
                foreach (var (kind, n) in Errors)
                {
                    w.WriteNumber(kind, n);
                }

                w.WriteEndObject();
                w.WriteEndObject();
            }

            return System.Text.Encoding.UTF8.GetString(buffer.ToArray());
        }
    }
}
