using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using DaemonEye.Cli.Output;
using DaemonEye.Protocol.Ipc.V1;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace DaemonEye.Cli.Commands;

/// <summary>
/// <c>top</c>: the agent's bus, RPC and collector rates, from two readings of its metrics one
/// interval apart (the counters of docs/metrics.md), with its collectors' states. Refreshed in place
/// on a terminal; one line per sample on a pipe; one JSON object per sample and line with -o json.
/// </summary>
internal static class TopCommand
{
    public static Command Build(CliContext context)
    {
        var command = new Command("top", "Live bus, RPC and collector rates (per second, over each interval) and the collectors' states; Ctrl-C to stop");
        var output = OutputOptions.AddTo(command, "one JSON object per sample and line");
        var watch = WatchOptions.AddTo(command, always: true);
        command.SetAction((parse, cancellationToken) => AgentConnection.RunAsync(context, async () =>
        {
            if (watch.Validate(parse) is { } invalid)
            {
                context.Error.WriteLine($"error: {invalid}");
                return CliApplication.Invalid;
            }

            var format = output.Get(parse);
            var interval = watch.Interval(parse);
            var (first, code) = await ReadAsync(context, parse, cancellationToken);
            if (first is null)
            {
                return code;
            }

            var previous = first;
            var baseline = true;
            async Task<Sample> TakeAsync(CancellationToken token)
            {
                if (baseline)
                {
                    // The first sample waits one interval after the first reading: a rate needs two.
                    baseline = false;
                    await Task.Delay(interval, context.Clock, token);
                }

                var (current, failed) = await ReadAsync(context, parse, token);
                if (current is null)
                {
                    return Sample.Failed(failed);
                }

                var rates = TopRates.Between(previous, current);
                previous = current;
                switch (format)
                {
                    case OutputFormat.Json:
                        context.Output.WriteLine(CollectorCommands.Json(w => rates.Write(w), indented: false));
                        context.Output.Flush();
                        return new Sample(Text.Empty, CliApplication.Ok);
                    case OutputFormat.Table or OutputFormat.Wide when !context.IsTerminal:
                        context.Output.WriteLine(rates.Line());
                        context.Output.Flush();
                        return new Sample(Text.Empty, CliApplication.Ok);
                    default:
                        return new Sample(View(context, rates), CliApplication.Ok);
                }
            }

            return await watch.RunAsync(context.Console, parse, "daemoneye-cli top", TakeAsync, cancellationToken, inPlace: context.IsTerminal && format != OutputFormat.Json);
        }));
        return command;
    }

    private static async Task<(TopReading? Reading, int ExitCode)> ReadAsync(CliContext context, ParseResult parse, CancellationToken cancellationToken)
    {
        var (metrics, code) = await CollectorCommands.RequestAsync(context, parse, new IpcRequest { Metrics = new MetricsRequest() }, cancellationToken);
        if (metrics is null)
        {
            return (null, code);
        }

        var (collectors, listCode) = await CollectorCommands.RequestAsync(context, parse, new IpcRequest { ListCollectors = new ListCollectorsRequest() }, cancellationToken);
        return collectors is null
            ? (null, listCode)
            : (new TopReading(context.Clock.GetTimestamp(), context.Clock.GetUtcNow(), metrics.Metrics.Metrics, collectors.ListCollectors), CliApplication.Ok);
    }

    private static Rows View(CliContext context, TopRates r)
    {
        static string Rate(double v) => v.ToString(v >= 100 ? "0" : "0.#", CultureInfo.InvariantCulture);
        var bus = Styles.Table(context.Console, "BUS", "PER SECOND>", "NOW>");
        bus.AddRow(Styles.Text("published"), Styles.Text(Rate(r.Published)), Styles.Text(string.Empty));
        foreach (var (root, rate) in r.PublishedByRoot)
        {
            bus.AddRow(Styles.Text($"  {root}.*", "grey"), Styles.Text(Rate(rate), "grey"), Styles.Text(string.Empty));
        }

        bus.AddRow(Styles.Text("delivered"), Styles.Text(Rate(r.Delivered)), Styles.Text(string.Empty));
        bus.AddRow(Styles.Text("dropped"), Styles.Text(Rate(r.Dropped), r.Dropped > 0 ? "bold red" : null), Styles.Text(string.Empty));
        bus.AddRow(Styles.Text("unrouted"), Styles.Text(Rate(r.Unrouted), r.Unrouted > 0 ? "yellow" : null), Styles.Text(string.Empty));
        bus.AddRow(Styles.Text("connections"), Styles.Text(string.Empty), Styles.Text(r.Connections.ToString(CultureInfo.InvariantCulture)));
        bus.AddRow(Styles.Text("subscriptions"), Styles.Text(string.Empty), Styles.Text(r.Subscriptions.ToString(CultureInfo.InvariantCulture)));
        bus.AddRow(Styles.Text("fullest buffer"), Styles.Text(string.Empty), Styles.Text(r.BufferUtilization.ToString("0 %", CultureInfo.InvariantCulture), r.BufferUtilization >= 0.8 ? "bold red" : null));

        var rpc = Styles.Table(context.Console, "RPC", "PER SECOND>", "NOW>");
        rpc.AddRow(Styles.Text("requests"), Styles.Text(Rate(r.Requests)), Styles.Text(string.Empty));
        rpc.AddRow(Styles.Text("responses"), Styles.Text(Rate(r.Responses)), Styles.Text(string.Empty));
        rpc.AddRow(Styles.Text("errors"), Styles.Text(Rate(r.Errors), r.Errors > 0 ? "bold red" : null), Styles.Text(string.Empty));
        rpc.AddRow(Styles.Text("pending"), Styles.Text(string.Empty), Styles.Text(r.Pending.ToString(CultureInfo.InvariantCulture)));
        rpc.AddRow(Styles.Text("heartbeats"), Styles.Text(Rate(r.Heartbeats)), Styles.Text(string.Empty));

        var collectors = r.Collectors.Collectors.Count == 0
            ? (IRenderable)Styles.Text("no collectors configured")
            : CollectorViews.Table(context, r.Collectors.Collectors, OutputFormat.Table);
        var grid = new Grid().AddColumn().AddColumn();
        grid.AddRow(bus, rpc);
        return new Rows(
            Styles.Text($"over the last {r.Seconds.ToString("0.0", CultureInfo.InvariantCulture)} s; {r.Collectors.Collectors.Count(c => c.State == CollectorState.Running)} of {r.Collectors.Collectors.Count} collector(s) running", "grey"),
            grid,
            collectors);
    }
}

/// <summary>One reading of the agent's metrics and collectors.</summary>
internal sealed record TopReading(long Timestamp, DateTimeOffset Time, IReadOnlyList<Metric> Metrics, ListCollectorsResponse Collectors)
{
    /// <summary>The sum of a metric's points (all tags), or of those whose tag matches; 0 when absent.</summary>
    public double Sum(string name, Func<MetricPoint, bool>? where = null) =>
        Metrics.FirstOrDefault(m => m.Name == name)?.Points.Where(p => where?.Invoke(p) ?? true).Sum(p => p.Value) ?? 0;

    public IEnumerable<string> Tag(string name, string tag) =>
        Metrics.FirstOrDefault(m => m.Name == name)?.Points.Select(p => p.Tags.TryGetValue(tag, out var v) ? v : string.Empty).Where(v => v.Length > 0).Distinct() ?? [];
}

/// <summary>Rates per second between two readings, and the gauges of the second.</summary>
internal sealed record TopRates(
    DateTimeOffset Time,
    double Seconds,
    double Published,
    IReadOnlyList<(string Root, double Rate)> PublishedByRoot,
    double Delivered,
    double Dropped,
    double Unrouted,
    double Requests,
    double Responses,
    double Errors,
    double Heartbeats,
    long Connections,
    long Subscriptions,
    long Pending,
    double BufferUtilization,
    ListCollectorsResponse Collectors)
{
    public static TopRates Between(TopReading before, TopReading after)
    {
        var seconds = Math.Max(1e-3, TimeSpan.FromTicks((long)((after.Timestamp - before.Timestamp) * (TimeSpan.TicksPerSecond / (double)System.Diagnostics.Stopwatch.Frequency))).TotalSeconds);
        double Rate(string name, Func<MetricPoint, bool>? where = null) => Math.Max(0, after.Sum(name, where) - before.Sum(name, where)) / seconds;
        var roots = after.Tag("daemoneye.bus.published", "topic.root").Order(StringComparer.Ordinal)
            .Select(root => (root, Rate("daemoneye.bus.published", p => p.Tags.TryGetValue("topic.root", out var v) && v == root)))
            .ToList();
        return new TopRates(
            after.Time,
            seconds,
            Rate("daemoneye.bus.published"),
            roots,
            Rate("daemoneye.bus.delivered"),
            Rate("daemoneye.bus.dropped"),
            Rate("daemoneye.bus.unrouted"),
            Rate("daemoneye.rpc.requests"),
            Rate("daemoneye.rpc.responses"),
            Rate("daemoneye.rpc.errors"),
            Rate("daemoneye.collectors.heartbeats"),
            (long)after.Sum("daemoneye.bus.connections"),
            (long)after.Sum("daemoneye.bus.subscriptions"),
            (long)after.Sum("daemoneye.rpc.pending"),
            after.Sum("daemoneye.bus.buffer.utilization"),
            after.Collectors);
    }

    /// <summary>One line for a pipe: time, then name=value pairs (rates per second).</summary>
    public string Line() => string.Create(CultureInfo.InvariantCulture,
        $"{ProtoJson.Iso(Time)} published/s={Published:0.##} delivered/s={Delivered:0.##} dropped/s={Dropped:0.##} unrouted/s={Unrouted:0.##} rpc_requests/s={Requests:0.##} rpc_responses/s={Responses:0.##} rpc_errors/s={Errors:0.##} heartbeats/s={Heartbeats:0.##} connections={Connections} subscriptions={Subscriptions} pending={Pending} collectors_running={Collectors.Collectors.Count(c => c.State == CollectorState.Running)}/{Collectors.Collectors.Count}");

    public void Write(Utf8JsonWriter w)
    {
        w.WriteStartObject();
        w.WriteString("time", ProtoJson.Iso(Time));
        w.WriteNumber("interval_seconds", Math.Round(Seconds, 3));
        w.WriteStartObject("bus");
        w.WriteNumber("published_per_second", Math.Round(Published, 3));
        w.WriteStartObject("published_per_second_by_topic_root");
        foreach (var (root, rate) in PublishedByRoot)
        {
            w.WriteNumber(root, Math.Round(rate, 3));
        }

        w.WriteEndObject();
        w.WriteNumber("delivered_per_second", Math.Round(Delivered, 3));
        w.WriteNumber("dropped_per_second", Math.Round(Dropped, 3));
        w.WriteNumber("unrouted_per_second", Math.Round(Unrouted, 3));
        w.WriteNumber("connections", Connections);
        w.WriteNumber("subscriptions", Subscriptions);
        w.WriteNumber("buffer_utilization", BufferUtilization);
        w.WriteEndObject();
        w.WriteStartObject("rpc");
        w.WriteNumber("requests_per_second", Math.Round(Requests, 3));
        w.WriteNumber("responses_per_second", Math.Round(Responses, 3));
        w.WriteNumber("errors_per_second", Math.Round(Errors, 3));
        w.WriteNumber("pending", Pending);
        w.WriteEndObject();
        w.WriteStartObject("collectors");
        w.WriteNumber("heartbeats_per_second", Math.Round(Heartbeats, 3));
        w.WriteNumber("running", Collectors.Collectors.Count(c => c.State == CollectorState.Running));
        w.WriteNumber("configured", Collectors.Collectors.Count);
        w.WriteEndObject();
        w.WriteEndObject();
    }
}
