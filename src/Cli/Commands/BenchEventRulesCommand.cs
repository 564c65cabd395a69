using System.Collections.Concurrent;
using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using DaemonEye.Client;
using DaemonEye.Protocol.Alert.V1;
using DaemonEye.Protocol.Filesystem.V1;
using DaemonEye.Protocol.Process.V1;
using DaemonEye.Topics;

namespace DaemonEye.Cli.Commands;

/// <summary>
/// <c>bench event-rules</c>: event arrival → alert on the bus, for the shipped event rule
/// <c>volatile-file-executed</c>, driven through the real collectors of the running agent. Each
/// iteration copies <c>/usr/bin/sleep</c> to a new file under <c>--dir</c> (a directory fsmond watches
/// and the watch list <c>volatile_directories</c> covers), runs it, and waits for the rule's alert
/// naming that file. The CLI subscribes to the events themselves too: the latency is from the arrival
/// (at this client, through the same bus) of the event that completed the match — the later of the
/// exec event and the file's first change event — to the arrival of the alert. Iterations run one
/// after another; the process started is killed and the file removed after each. Where each
/// iteration's time goes is reported too: each step from the start of the copy (<c>from_drop</c>).
/// </summary>
internal static class BenchEventRulesCommand
{
    private const string RuleId = "volatile-file-executed";

    public static Command Build(CliContext context)
    {
        var dir = new Option<string>("--dir") { Description = "A directory fsmond watches and coordination.rules.watch_lists.volatile_directories covers", DefaultValueFactory = _ => "/tmp" };
        var count = new Option<int>("--count") { Description = "Iterations measured", DefaultValueFactory = _ => 200 };
        var warmup = new Option<int>("--warmup") { Description = "Unrecorded iterations first", DefaultValueFactory = _ => 5 };
        var timeout = new Option<double>("--timeout") { Description = "Seconds to wait for each alert", DefaultValueFactory = _ => 10 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object with the results" };
        var command = new Command("event-rules", $"Event arrival to alert on the bus for the event rule {RuleId}, through the real procmond and fsmond");
        foreach (var option in new Option[] { dir, count, warmup, timeout, json })
        {
            command.Options.Add(option);
        }

        command.SetAction((parse, cancellationToken) => AgentConnection.RunAsync(context, async () =>
        {
            var directory = parse.GetValue(dir)!;
            var (n, w, wait) = (parse.GetValue(count), parse.GetValue(warmup), TimeSpan.FromSeconds(parse.GetValue(timeout)));
            if (!Directory.Exists(directory) || n < 1 || w < 0 || wait <= TimeSpan.Zero)
            {
                context.Error.WriteLine($"error: --dir must exist ('{directory}'), --count be at least 1, --warmup at least 0 and --timeout positive");
                return CliApplication.Invalid;
            }

            await using var client = await AgentConnection.ConnectAsync(context, AgentConnection.Options(context, parse, "-bench-events"), cancellationToken);
            if (client is null)
            {
                return CliApplication.Unavailable;
            }

            var seen = new Arrivals();
            var readers = new List<Task>();
            var subscriptions = new List<BusSubscription>();
            foreach (var pattern in new[] { WellKnownTopics.AllAlerts, WellKnownTopics.ProcessLifecycle, WellKnownTopics.AllFilesystem })
            {
                var subscription = await client.SubscribeAsync(pattern, cancellationToken);
                subscriptions.Add(subscription);
                readers.Add(Task.Run(async () =>
                {
                    await foreach (var message in subscription.ReadAllAsync(CancellationToken.None))
                    {
                        seen.Record(message, Stopwatch.GetTimestamp());
                    }
                }, CancellationToken.None));
            }

            var histogram = new LatencyHistogram();
            var phases = new Phases();
            int timeouts = 0, unmeasured = 0;
            long done = 0;
            var started = Stopwatch.GetTimestamp();
            var progress = new BenchProgress { Done = () => Volatile.Read(ref done) };
            await progress.ShowAsync(context, "iterations (warm-up included)", w + n, null, IterateAsync());
            var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;

            async Task<bool> IterateAsync()
            {
                for (var i = 0; i < w + n && !cancellationToken.IsCancellationRequested; i++)
                {
                    var path = Path.Combine(directory, $"de-bench-event-{Environment.ProcessId}-{i}");
                    var iteration = await IterationAsync(path, seen, wait, cancellationToken);
                    Volatile.Write(ref done, i + 1);
                    if (i < w)
                    {
                        continue;
                    }

                    phases.Record(iteration);
                    if (iteration.Latency is { } nanos && nanos >= 0)
                    {
                        histogram.Record(nanos);
                    }
                    else if (iteration.Latency is not null)
                    {
                        unmeasured++;
                    }
                    else
                    {
                        timeouts++;
                    }
                }

                return true;
            }

            foreach (var subscription in subscriptions)
            {
                await subscription.DisposeAsync();
            }

            if (parse.GetValue(json))
            {
                using var stream = new MemoryStream();
                using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
                {
                    writer.WriteStartObject();
                    writer.WriteString("rule", RuleId);
                    writer.WriteNumber("iterations", n);
                    writer.WriteNumber("alerts", histogram.Count);
                    writer.WriteNumber("timeouts", timeouts);
                    writer.WriteNumber("unmeasured", unmeasured);
                    writer.WriteNumber("seconds", Math.Round(seconds, 2));
                    histogram.WriteMicros(writer);
                    phases.Write(writer);
                    writer.WriteEndObject();
                }

                context.Output.WriteLine(System.Text.Encoding.UTF8.GetString(stream.ToArray()));
            }
            else
            {
                context.Output.WriteLine($"event-rules ({RuleId}): {histogram.Count} alert(s) timed of {n} iteration(s), {unmeasured} alert(s) whose events this client missed, {timeouts} timed out, {seconds:0.0} s");
                context.Output.WriteLine("event arrival → alert: " + histogram.Summary());
                phases.Print(context.Output);
            }

            if (timeouts > 0)
            {
                context.Error.WriteLine($"error: {timeouts} of {n} iteration(s) raised no {RuleId} alert within {wait.TotalSeconds:0.###} s (is fsmond watching '{directory}', and does volatile_directories cover it?)");
                return CliApplication.No;
            }

            return CliApplication.Ok;
        }));
        return command;
    }

    /// <summary>
    /// One drop-and-run. <see cref="Iteration.Latency"/>: nanoseconds from the arrival of the event that
    /// completed the match to the alert's, -1 when this client missed one of the events, null when no
    /// alert came in time; the other members are Stopwatch timestamps of its steps.
    /// </summary>
    private static async Task<Iteration> IterationAsync(string path, Arrivals seen, TimeSpan wait, CancellationToken cancellationToken)
    {
        var dropped = Stopwatch.GetTimestamp();
        File.Copy("/usr/bin/sleep", path, overwrite: true);
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        using var process = Process.Start(new ProcessStartInfo(path, ["60"]) { UseShellExecute = false })!;
        var running = Stopwatch.GetTimestamp();
        long? alertAt = null;
        try
        {
            alertAt = await seen.AlertAsync(path, wait, cancellationToken);
        }
        finally
        {
            process.Kill();
            await process.WaitForExitAsync(CancellationToken.None);
            File.Delete(path);
        }

        var done = Stopwatch.GetTimestamp();
        var (exec, file) = (seen.ExecAt(path), seen.FirstFileAt(path));
        long? latency = alertAt is not { } at ? null
            // The match was complete once both the exec and the file's first change had arrived; an
            // iteration whose events this client did not receive is counted as unmeasured (-1).
            : exec is not { } e || file is not { } f ? -1
            : (long)((at - Math.Max(e, f)) * (1e9 / Stopwatch.Frequency));
        return new Iteration(latency, dropped, running, exec, file, alertAt, done);
    }

    private readonly record struct Iteration(long? Latency, long Dropped, long Running, long? Exec, long? File, long? Alert, long Done);

    /// <summary>
    /// Where an iteration's time goes, each step from the start of the drop (the copy): the process
    /// running (Process.Start returned), the file's first event and the exec event at this client, the
    /// alert, and the iteration's end (the process killed and reaped, the file deleted).
    /// </summary>
    private sealed class Phases
    {
        private readonly (string Name, LatencyHistogram Histogram)[] _steps =
            [("running", new()), ("file_event", new()), ("exec_event", new()), ("alert", new()), ("iteration", new())];

        public void Record(Iteration it)
        {
            Add(0, it.Running);
            Add(1, it.File);
            Add(2, it.Exec);
            Add(3, it.Alert);
            Add(4, it.Done);

            void Add(int step, long? at)
            {
                if (at is { } t)
                {
                    _steps[step].Histogram.Record((long)((t - it.Dropped) * (1e9 / Stopwatch.Frequency)));
                }
            }
        }

        public void Write(Utf8JsonWriter writer)
        {
            writer.WriteStartObject("from_drop");
            foreach (var (name, histogram) in _steps)
            {
                histogram.WriteMicros(writer, name + "_us");
            }

            writer.WriteEndObject();
        }

        public void Print(TextWriter output)
        {
            foreach (var (name, histogram) in _steps)
            {
                output.WriteLine($"drop → {name.Replace('_', ' ')}: {histogram.Summary()}");
            }
        }
    }

    /// <summary>When (Stopwatch timestamps) this client received each path's exec event, first file event and alert.</summary>
    private sealed class Arrivals
    {
        private readonly ConcurrentDictionary<string, long> _execs = new(StringComparer.Ordinal);
        private readonly ConcurrentDictionary<string, long> _files = new(StringComparer.Ordinal);
        private readonly ConcurrentDictionary<string, TaskCompletionSource<long>> _alerts = new(StringComparer.Ordinal);

        public void Record(BusMessage message, long at)
        {
            try
            {
                if (message.Topic == WellKnownTopics.ProcessLifecycle)
                {
                    var e = ProcessLifecycle.Parser.ParseFrom(message.Payload.Span);
                    if (e.Kind != ProcessLifecycleKind.Exited && e.Process is { Executable.Length: > 0 } p)
                    {
                        _execs.TryAdd(p.Executable, at);
                    }
                }
                else if (WellKnownTopics.FilesystemChanges.Contains(message.Topic))
                {
                    var e = FileEvent.Parser.ParseFrom(message.Payload.Span);
                    _files.TryAdd(e.Path, at);
                }
                else if (message.Topic.StartsWith(WellKnownTopics.AlertPrefix, StringComparison.Ordinal))
                {
                    var alert = Alert.Parser.ParseFrom(message.Payload.Span);
                    if (alert.RuleId == RuleId && alert.Fields.FirstOrDefault(f => f.Name == "executable") is { } executable)
                    {
                        Completion(executable.Value).TrySetResult(at);
                    }
                }
            }
            catch (Google.Protobuf.InvalidProtocolBufferException)
            {
                // Not an event of the shape this bench reads (e.g. fsmond's integrity or anomaly topics).
            }
        }

        public long? ExecAt(string path) => _execs.TryGetValue(path, out var at) ? at : null;

        public long? FirstFileAt(string path) => _files.TryGetValue(path, out var at) ? at : null;

        public async Task<long?> AlertAsync(string path, TimeSpan wait, CancellationToken cancellationToken)
        {
            try
            {
                return await Completion(path).Task.WaitAsync(wait, cancellationToken);
            }
            catch (TimeoutException)
            {
                return null;
            }
        }

        private TaskCompletionSource<long> Completion(string path) =>
            _alerts.GetOrAdd(path, _ => new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously));
    }
}
