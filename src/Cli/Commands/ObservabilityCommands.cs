using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using DaemonEye.Cli.Output;
using DaemonEye.Protocol.Ipc.V1;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace DaemonEye.Cli.Commands;

/// <summary>
/// <c>metrics</c> (the agent's instruments, docs/metrics.md) and <c>health</c> (the product
/// document's health checks). <c>health</c> exits 0 healthy, 1 degraded, 2 unhealthy, 3 when the
/// agent cannot be reached or cannot evaluate its health.
/// </summary>
internal static class ObservabilityCommands
{
    public const int Healthy = 0;
    public const int Degraded = 1;
    public const int Unhealthy = 2;

    public static Command BuildMetrics(CliContext context)
    {
        var command = new Command("metrics", "The agent's metrics: bus, RPC and collector counters, gauges and latency histograms");
        var output = OutputOptions.AddTo(command, "one JSON object");
        var watch = WatchOptions.AddTo(command);
        command.SetAction((parse, cancellationToken) => AgentConnection.RunAsync(context, () =>
            CollectorCommands.RunViewAsync(context, parse, output, watch, "metrics", new IpcRequest { Metrics = new MetricsRequest() }, (response, format) => format == OutputFormat.Json
                ? CollectorCommands.Json(w => WriteMetrics(w, response.Metrics))
                : MetricsView(context, response.Metrics), null, null, cancellationToken)));
        return command;
    }

    /// <summary>
    /// On a terminal a table (name with tags, value, unit); on a pipe one line per point,
    /// <c>name{tag=value,...} value unit</c> (histograms: count, mean, p50, p99), for grep and awk.
    /// </summary>
    private static Rows MetricsView(CliContext context, MetricsResponse metrics)
    {
        var lines = new List<IRenderable>
        {
            Styles.Text(metrics.PrometheusEnabled ? $"prometheus: {metrics.PrometheusEndpoint}" : "prometheus: not served (broker.enable_metrics: false)"),
        };
        var table = Styles.Table(context.Console, "NAME", "VALUE>", "UNIT");
        foreach (var metric in metrics.Metrics)
        {
            if (metric.Points.Count == 0)
            {
                table.AddRow(Styles.Text(metric.Name), Styles.Text("-"), Styles.Text("(nothing recorded)"));
                lines.Add(Styles.Text($"{metric.Name} {Unit(metric)}(nothing recorded)"));
            }

            foreach (var point in metric.Points)
            {
                var name = metric.Name + Tags(point);
                var value = metric.Kind == "histogram" ? Histogram(metric, point) : Number(point.Value);
                table.AddRow(Styles.Text(name), Styles.Text(value), Styles.Text(Unit(metric).Trim()));
                lines.Add(Styles.Text(metric.Kind == "histogram" ? $"{name} {value}" : $"{name} {value} {Unit(metric)}".TrimEnd()));
            }
        }

        return context.IsTerminal ? new Rows(lines[0], table) : new Rows(lines);
    }

    public static Command BuildHealth(CliContext context)
    {
        var command = new Command("health", "Check the agent: broker accepting connections, RPC responding, collectors heartbeating, buffers not full, error rate (exit 0 healthy, 1 degraded, 2 unhealthy, 3 unreachable)");
        var output = OutputOptions.AddTo(command, "one JSON object");
        var watch = WatchOptions.AddTo(command);
        // Unreachable, or the agent could not evaluate (its error is on stderr): either way not a verdict, 3.
        command.SetAction((parse, cancellationToken) => AgentConnection.RunAsync(context, () =>
            CollectorCommands.RunViewAsync(context, parse, output, watch, "health", new IpcRequest { Health = new HealthRequest() }, (response, format) => format == OutputFormat.Json
                ? CollectorCommands.Json(w => WriteHealth(w, response.Health))
                : HealthView(context, response.Health), response => ExitCode(response.Health.Status), CliApplication.Unavailable, cancellationToken)));
        return command;
    }

    private static Rows HealthView(CliContext context, HealthResponse health)
    {
        var table = Styles.Table(context.Console, "CHECK", "STATUS", "DETAIL");
        foreach (var check in health.Checks)
        {
            table.AddRow(Styles.Text(check.Name), Styles.Status(context.Console, StatusName(check.Status)), Styles.Text(check.Detail));
        }

        var overall = context.IsTerminal
            ? new Columns(Styles.Text("overall:", "bold"), Styles.Status(context.Console, StatusName(health.Status))) { Expand = false }
            : (IRenderable)Styles.Text($"overall: {StatusName(health.Status)}");
        return new Rows(table, overall);
    }

    private static void WriteHealth(Utf8JsonWriter w, HealthResponse health)
    {
        w.WriteStartObject();
        w.WriteString("status", StatusName(health.Status));
        w.WriteStartArray("checks");
        foreach (var check in health.Checks)
        {
            w.WriteStartObject();
            w.WriteString("name", check.Name);
            w.WriteString("status", StatusName(check.Status));
            w.WriteString("detail", check.Detail);
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteEndObject();
    }

    public static int ExitCode(HealthStatus status) => status switch
    {
        HealthStatus.Healthy => Healthy,
        HealthStatus.Degraded => Degraded,
        HealthStatus.Unhealthy => Unhealthy,
        _ => CliApplication.Unavailable,
    };

    /// <summary>healthy, degraded, unhealthy.</summary>
    public static string StatusName(HealthStatus status) => status switch
    {
        HealthStatus.Healthy => "healthy",
        HealthStatus.Degraded => "degraded",
        HealthStatus.Unhealthy => "unhealthy",
        _ => "unknown",
    };

    private static void WriteMetrics(Utf8JsonWriter w, MetricsResponse metrics)
    {
        w.WriteStartObject();
        w.WriteStartObject("prometheus");
        w.WriteBoolean("enabled", metrics.PrometheusEnabled);
        w.WriteString("endpoint", metrics.PrometheusEndpoint);
        w.WriteEndObject();
        w.WriteStartArray("metrics");
        foreach (var metric in metrics.Metrics)
        {
            w.WriteStartObject();
            w.WriteString("name", metric.Name);
            w.WriteString("meter", metric.Meter);
            w.WriteString("kind", metric.Kind);
            w.WriteString("unit", metric.Unit);
            w.WriteString("description", metric.Description);
            w.WriteStartArray("points");
            foreach (var point in metric.Points)
            {
                w.WriteStartObject();
                w.WriteStartObject("tags");
                foreach (var (key, value) in point.Tags.OrderBy(t => t.Key, StringComparer.Ordinal))
                {
                    w.WriteString(key, value);
                }

                w.WriteEndObject();
                if (metric.Kind == "histogram")
                {
                    w.WriteNumber("count", point.Count);
                    w.WriteNumber("sum", point.Sum);
                    w.WriteStartArray("buckets");
                    for (var i = 0; i < point.BucketCounts.Count; i++)
                    {
                        w.WriteStartObject();
                        if (i < point.Bounds.Count)
                        {
                            w.WriteNumber("le", point.Bounds[i]);
                        }
                        else
                        {
                            w.WriteString("le", "+Inf");
                        }

                        w.WriteNumber("count", point.BucketCounts[i]);
                        w.WriteEndObject();
                    }

                    w.WriteEndArray();
                }
                else
                {
                    w.WriteNumber("value", point.Value);
                }

                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static string Tags(MetricPoint point) => point.Tags.Count == 0
        ? string.Empty
        : "{" + string.Join(",", point.Tags.OrderBy(t => t.Key, StringComparer.Ordinal).Select(t => $"{t.Key}={t.Value}")) + "}";

    private static string Unit(Metric metric) => metric.Unit.Length == 0 || metric.Unit == "1" ? string.Empty : metric.Unit + " ";

    private static string Number(double value) => value.ToString(value == Math.Floor(value) && Math.Abs(value) < 1e15 ? "0" : "0.####", CultureInfo.InvariantCulture);

    /// <summary>count, mean, and p50/p99 as the upper bound of the bucket that holds them.</summary>
    private static string Histogram(Metric metric, MetricPoint point)
    {
        if (point.Count == 0)
        {
            return "count 0";
        }

        var seconds = metric.Unit == "s";
        string Format(double v) => seconds ? Duration(v) : v.ToString("0.###", CultureInfo.InvariantCulture);
        return $"count {point.Count}, mean {Format(point.Sum / point.Count)}, p50 <= {Format(Quantile(point, 0.5))}, p99 <= {Format(Quantile(point, 0.99))}";
    }

    private static double Quantile(MetricPoint point, double q)
    {
        var rank = (ulong)Math.Ceiling(q * point.Count);
        ulong seen = 0;
        for (var i = 0; i < point.BucketCounts.Count; i++)
        {
            seen += point.BucketCounts[i];
            if (seen >= rank)
            {
                return i < point.Bounds.Count ? point.Bounds[i] : double.PositiveInfinity;
            }
        }

        return double.PositiveInfinity;
    }

    private static string Duration(double seconds) => double.IsPositiveInfinity(seconds)
        ? "+Inf"
        : seconds >= 1 ? seconds.ToString("0.### s", CultureInfo.InvariantCulture)
        : seconds >= 0.001 ? (seconds * 1000).ToString("0.### ms", CultureInfo.InvariantCulture)
        : (seconds * 1_000_000).ToString("0.# µs", CultureInfo.InvariantCulture);
}
