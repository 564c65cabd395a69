using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using DaemonEye.Client;

namespace DaemonEye.Cli.Commands;

/// <summary>
/// <c>bench procmond|netmond|fsmond</c>: this process causes kernel events at a paced rate (execs,
/// socket closes, file creates), each timed just before the system call, and subscribes to the
/// collector's topic; the latency of one action is from that timestamp to the receipt of the event
/// that names it (pid, local port, path). Actions whose event never came within <c>--grace</c> are
/// reported as missed. The collector's CPU is sampled outside (bench/&lt;collector&gt;/*.sh).
/// </summary>
internal static partial class BenchCollectorCommand
{
    public static IEnumerable<Command> Build(CliContext context) => [BuildProcmond(context), BuildNetmond(context), BuildFsmond(context)];

    /// <summary>The options every collector bench has.</summary>
    private sealed class CommonOptions
    {
        public Option<int> Rate { get; } = new("--rate") { Description = "Actions per second, each on its own schedule", DefaultValueFactory = _ => 100 };

        public Option<double> Duration { get; } = new("--duration") { Description = "Seconds of measured load", DefaultValueFactory = _ => 10 };

        public Option<double> Warmup { get; } = new("--warmup") { Description = "Seconds of load before the measurement (not recorded)", DefaultValueFactory = _ => 2 };

        public Option<double> Grace { get; } = new("--grace") { Description = "Seconds to wait after the load for the last events before counting the rest as missed", DefaultValueFactory = _ => 5 };

        public Option<bool> Json { get; } = new("--json") { Description = "Print one JSON object with the results" };

        public void AddTo(Command command)
        {
            foreach (var option in new Option[] { Rate, Duration, Warmup, Grace, Json })
            {
                command.Options.Add(option);
            }
        }

        public LoadSettings Read(ParseResult parse) =>
            new(parse.GetValue(Rate), TimeSpan.FromSeconds(parse.GetValue(Duration)), TimeSpan.FromSeconds(parse.GetValue(Warmup)), TimeSpan.FromSeconds(parse.GetValue(Grace)));
    }

    private sealed record LoadSettings(int Rate, TimeSpan Duration, TimeSpan Warmup, TimeSpan Grace)
    {
        public long Warmups => (long)(Rate * Warmup.TotalSeconds);

        public long Measured => (long)(Rate * Duration.TotalSeconds);

        public IEnumerable<string> Validate()
        {
            if (Rate is < 1 or > 1_000_000)
            {
                yield return $"--rate is {Rate}; it must be 1 to 1000000";
            }

            if (Duration <= TimeSpan.Zero)
            {
                yield return "--duration must be positive";
            }

            if (Warmup < TimeSpan.Zero)
            {
                yield return "--warmup must be 0 or more";
            }

            if (Grace <= TimeSpan.Zero)
            {
                yield return "--grace must be positive";
            }
        }
    }

    /// <summary>
    /// Pairs each action (key and timestamp) with the event that names it. An event may be read
    /// before the generator has stored its action (an exec's pid is known only once the spawn
    /// returns): it is kept, and taken only by an action timed before it, so an event about a
    /// reused pid or port of earlier does not match a later action.
    /// </summary>
    private sealed class EventMatcher<TKey>
        where TKey : notnull
    {
        private readonly Lock _lock = new();
        private readonly Dictionary<TKey, (long At, bool Record)> _sent = [];
        private readonly Dictionary<TKey, (long At, long BusNanos)> _early = [];
        private readonly LatencyHistogram _latency = new();
        private readonly LatencyHistogram _bus = new();
        private long _events;
        private long _matched;
        private long _reused;

        public LatencyHistogram Latency => _latency;

        /// <summary>The part of each matched latency from the collector's publish (the message's
        /// timestamp, the collector's wall clock) to its receipt here (this host's wall clock).</summary>
        public LatencyHistogram Bus => _bus;

        /// <summary>Events of the watched kind received, ours or not.</summary>
        public long Events => Interlocked.Read(ref _events);

        public long Matched => Interlocked.Read(ref _matched);

        /// <summary>Actions whose key was still waiting for an event from an earlier action (that one is then missed).</summary>
        public long Reused => Interlocked.Read(ref _reused);

        public int Pending
        {
            get
            {
                lock (_lock)
                {
                    return _sent.Count(s => s.Value.Record);
                }
            }
        }

        /// <summary>Up to <paramref name="count"/> recorded actions still without their event, oldest first.</summary>
        public List<(TKey Key, long At)> Missing(int count)
        {
            lock (_lock)
            {
                return [.. _sent.Where(s => s.Value.Record).OrderBy(s => s.Value.At).Take(count).Select(s => (s.Key, s.Value.At))];
            }
        }

        public void Sent(TKey key, long at, bool record)
        {
            lock (_lock)
            {
                if (_early.Remove(key, out var received) && received.At >= at)
                {
                    Match(at, received.At, received.BusNanos, record);
                    return;
                }

                if (!_sent.TryAdd(key, (at, record)))
                {
                    _reused++;
                    _sent[key] = (at, record);
                }
            }
        }

        /// <summary>An event naming <paramref name="key"/>, read at <paramref name="at"/> (a Stopwatch
        /// timestamp), published <paramref name="publishedUnixNanos"/> by the collector's clock.</summary>
        public void Received(TKey key, long at, ulong publishedUnixNanos)
        {
            var busNanos = publishedUnixNanos == 0 ? -1 : (long)((ulong)((DateTime.UtcNow.Ticks - DateTime.UnixEpoch.Ticks) * 100L) - publishedUnixNanos);
            lock (_lock)
            {
                _events++;
                if (_sent.Remove(key, out var sent))
                {
                    Match(sent.At, at, busNanos, sent.Record);
                    return;
                }

                if (_early.Count > 100_000)
                {
                    // Events about others' processes, sockets or files: keep the last two seconds.
                    var horizon = at - (2 * Stopwatch.Frequency);
                    foreach (var stale in _early.Where(e => e.Value.At < horizon).Select(e => e.Key).ToList())
                    {
                        _early.Remove(stale);
                    }
                }

                _early[key] = (at, busNanos);
            }
        }

        private void Match(long sent, long received, long busNanos, bool record)
        {
            if (record)
            {
                _matched++;
                _latency.Record((long)((received - sent) * (1e9 / Stopwatch.Frequency)));
                if (busNanos >= 0)
                {
                    _bus.Record(busNanos);
                }

            }
        }
    }

    /// <summary>Runs <paramref name="act"/> on a paced thread: warm-up actions first (not recorded),
    /// then the measured ones; returns the seconds the measured part took and the worst lag behind schedule.</summary>
    private static Task<(double Seconds, TimeSpan MaxBehind, long Failed)> PaceAsync(LoadSettings settings, Func<long, bool, bool> act, CancellationToken cancellationToken)
    {
        var done = new TaskCompletionSource<(double, TimeSpan, long)>(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            try
            {
                Pacer.UsePreciseTimers();
                var period = Stopwatch.Frequency / (double)settings.Rate;
                var origin = Stopwatch.GetTimestamp() + (Stopwatch.Frequency / 100);
                var total = settings.Warmups + settings.Measured;
                long measuredStart = 0, maxBehind = 0, failed = 0;
                for (long i = 0; i < total && !cancellationToken.IsCancellationRequested; i++)
                {
                    var due = origin + (long)(i * period);
                    Pacer.WaitUntil(due);
                    var record = i >= settings.Warmups;
                    if (i == settings.Warmups)
                    {
                        measuredStart = Stopwatch.GetTimestamp();
                    }

                    maxBehind = Math.Max(maxBehind, Stopwatch.GetTimestamp() - due);
                    if (!act(i, record) && record)
                    {
                        failed++;
                    }
                }

                done.SetResult((Stopwatch.GetElapsedTime(measuredStart).TotalSeconds, TimeSpan.FromSeconds(maxBehind / (double)Stopwatch.Frequency), failed));
            }
            catch (Exception e)
            {
                done.SetException(e);
            }
        })
        { IsBackground = true, Name = "bench load" };
        thread.Start();
        return done.Task;
    }

    /// <summary>Waits until every recorded action has its event or the grace period has passed.</summary>
    private static async Task WaitForEventsAsync<TKey>(EventMatcher<TKey> matcher, TimeSpan grace, CancellationToken cancellationToken)
        where TKey : notnull
    {
        var end = Stopwatch.GetTimestamp() + (long)(grace.TotalSeconds * Stopwatch.Frequency);
        while (matcher.Pending > 0 && Stopwatch.GetTimestamp() < end)
        {
            await Task.Delay(20, cancellationToken);
        }
    }

    /// <summary>Connects, subscribes, runs the load, waits for the events, prints the result.</summary>
    private static async Task<int> RunAsync<TKey>(CliContext context, ParseResult parse, CommonOptions options, string name, string action, string pattern,
        BusMessageHandler handlerFor, EventMatcher<TKey> matcher, Func<LoadSettings, CancellationToken, Task<(double Seconds, TimeSpan MaxBehind, long Failed)>> load, CancellationToken cancellationToken)
        where TKey : notnull
    {
        var settings = options.Read(parse);
        var problems = settings.Validate().ToList();
        if (problems.Count > 0)
        {
            foreach (var problem in problems)
            {
                context.Error.WriteLine($"error: {problem}");
            }

            return CliApplication.Invalid;
        }

        await using var client = await AgentConnection.ConnectAsync(context, AgentConnection.Options(context, parse, $"-bench-{name}"), cancellationToken);
        if (client is null)
        {
            return CliApplication.Unavailable;
        }

        await using var subscription = await client.SubscribeAsync(pattern, handlerFor, cancellationToken);
        var started = Stopwatch.GetTimestamp();
        var progress = new BenchProgress { Done = () => matcher.Matched };
        var (seconds, maxBehind, failed) = await progress.ShowAsync(context, $"{action} matched to their event", settings.Measured, null, LoadThenWaitAsync());
        var missed = matcher.Pending;
        var result = new Result(name, action, pattern, settings, seconds, maxBehind, failed, matcher.Matched, missed, matcher.Reused, matcher.Events, matcher.Latency, matcher.Bus);
        if (parse.GetValue(options.Json))
        {
            context.Output.WriteLine(result.ToJson());
        }
        else
        {
            result.Print(context.Output);
        }

        if (failed > 0 || missed > 0)
        {
            var first = matcher.Missing(20).Select(m => $"{m.Key} (at {Stopwatch.GetElapsedTime(started, m.At).TotalSeconds:0.000} s)");
            context.Error.WriteLine($"missed: {string.Join(", ", first)}{(missed > 20 ? ", ..." : "")}");
            context.Error.WriteLine($"error: {failed} action(s) failed, {missed} event(s) missed of {settings.Measured}");
            return CliApplication.No;
        }

        return CliApplication.Ok;

        async Task<(double Seconds, TimeSpan MaxBehind, long Failed)> LoadThenWaitAsync()
        {
            var loaded = await load(settings, cancellationToken);
            await WaitForEventsAsync(matcher, settings.Grace, cancellationToken);
            return loaded;
        }
    }

    private sealed record Result(string Collector, string Action, string Pattern, LoadSettings Settings, double Seconds, TimeSpan MaxBehind, long Failed, long Matched, long Missed, long Reused, long Events, LatencyHistogram Latency, LatencyHistogram Bus)
    {
        public void Print(TextWriter output)
        {
            output.WriteLine($"{Collector}: {Settings.Measured:N0} {Action} at {Settings.Rate:N0}/s over {Seconds:0.000} s (after {Settings.Warmups:N0} warm-up), events on {Pattern}; load at most {MaxBehind.TotalMilliseconds:0.0} ms behind schedule");
            output.WriteLine($"  matched    {Matched,12:N0}   missed {Missed:N0}   failed actions {Failed:N0}   key reused before its event {Reused:N0}   events seen {Events:N0}");
            output.WriteLine($"  latency    {Latency.Summary()}");
            output.WriteLine($"  of which publish -> receipt (collector's timestamp to this process, wall clocks): {Bus.Summary()}");
        }

        public string ToJson()
        {
            using var buffer = new MemoryStream();
            using (var w = new Utf8JsonWriter(buffer))
            {
                w.WriteStartObject();
                w.WriteString("collector", Collector);
                w.WriteString("action", Action);
                w.WriteNumber("rate", Settings.Rate);
                w.WriteNumber("actions", Settings.Measured);
                w.WriteNumber("seconds", Math.Round(Seconds, 6));
                w.WriteNumber("max_behind_schedule_ms", Math.Round(MaxBehind.TotalMilliseconds, 3));
                w.WriteNumber("matched", Matched);
                w.WriteNumber("missed", Missed);
                w.WriteNumber("failed", Failed);
                w.WriteNumber("key_reused", Reused);
                w.WriteNumber("events_seen", Events);
                Latency.WriteMicros(w);
                w.WriteStartObject("bus");
                Bus.WriteMicros(w);
                w.WriteEndObject();
                w.WriteEndObject();
            }

            return System.Text.Encoding.UTF8.GetString(buffer.ToArray());
        }
    }
}
