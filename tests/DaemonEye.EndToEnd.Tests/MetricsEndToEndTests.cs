using System.Globalization;
using System.Text;
using System.Text.Json;
using DaemonEye.Client;
using DaemonEye.Protocol.V1;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// A known workload through the real agent, then its metrics read two ways: <c>daemoneye-cli
/// metrics --json</c> (the agent's own aggregator over IPC) and the Prometheus endpoint
/// (OpenTelemetry, broker.enable_metrics) — the same exact values from both.
/// </summary>
public sealed class MetricsEndToEndTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private const int Messages = 500;
    private const int Subscribers = 3;

    [Fact]
    public async Task After_a_known_workload_the_CLI_and_Prometheus_report_its_exact_counts()
    {
        await using var agent = await AgentProcess.StartAsync(new Dictionary<string, string>(TestTokens.AgentSettings("tc-metrics")));
        using var collector = await TestCollectorProcess.StartAsync(agent.SocketPath, "tc-metrics");

        // M subscribers on events.metrics.#, N messages published on events.metrics.load.
        var subscribers = new List<(BusClient Client, BusSubscription Subscription)>();
        for (var i = 0; i < Subscribers; i++)
        {
            var client = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = $"metrics-sub-{i}", AutoReconnect = false });
            subscribers.Add((client, await client.SubscribeAsync("events.metrics.#")));
        }

        await using var publisher = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = "metrics-pub", AutoReconnect = false });
        try
        {
            for (var i = 0; i < Messages; i++)
            {
                await publisher.PublishAsync("events.metrics.load", Encoding.UTF8.GetBytes($"m{i}"));
            }

            await publisher.FlushAsync();
            using var patience = new CancellationTokenSource(Patience);
            foreach (var (_, subscription) in subscribers)
            {
                for (var i = 0; i < Messages; i++)
                {
                    await subscription.Reader.ReadAsync(patience.Token);
                }
            }

            // RPC: one answered call, one refused (no such collector).
            var answered = await publisher.CallAsync("tc-metrics", RpcOperation.GetCapabilities).WaitAsync(Patience);
            Assert.Equal(RpcStatus.Ok, answered.Status);
            var refused = await publisher.CallAsync("tc-missing", RpcOperation.UpdateConfig).WaitAsync(Patience);
            Assert.Equal(RpcErrorKind.NotFound, refused.Error.Kind);

            var (code, stdout, stderr) = await CliProcess.RunAsync(agent.SocketPath, Patience, "metrics", "--json");
            Assert.True(code == 0, $"metrics exited {code}: {stderr}");
            using var json = JsonDocument.Parse(string.Join('\n', stdout));
            var root = json.RootElement;

            Assert.Equal(Messages, Value(root, "daemoneye.bus.published", ("topic.root", "events")));
            Assert.Equal(Messages * Subscribers, Value(root, "daemoneye.bus.delivered", ("topic.root", "events")));
            Assert.Equal(0, Value(root, "daemoneye.bus.dropped"));
            Assert.Equal(0, Value(root, "daemoneye.bus.protocol_errors"));
            Assert.Equal(Subscribers, Value(root, "daemoneye.bus.subscriptions"));
            Assert.Equal(Subscribers, Value(root, "daemoneye.bus.subscribers"));
            // The subscribers, the publisher and the collector.
            Assert.Equal(Subscribers + 2, Value(root, "daemoneye.bus.connections"));
            Assert.Equal(1, Value(root, "daemoneye.collectors.connected"));
            Assert.Equal(1, Value(root, "daemoneye.rpc.requests", ("rpc.operation", "get_capabilities")));
            Assert.Equal(1, Value(root, "daemoneye.rpc.responses", ("rpc.operation", "get_capabilities"), ("rpc.status", "ok")));
            Assert.Equal(1, Value(root, "daemoneye.rpc.requests", ("rpc.operation", "update_config")));
            Assert.Equal(1, Value(root, "daemoneye.rpc.errors", ("rpc.operation", "update_config"), ("error.kind", "not_found")));
            Assert.Equal(0, Value(root, "daemoneye.rpc.pending"));

            var rpc = Point(root, "daemoneye.rpc.duration", ("rpc.operation", "get_capabilities"));
            Assert.Equal(1, rpc.GetProperty("count").GetInt64());
            Assert.Equal(1, rpc.GetProperty("buckets").EnumerateArray().Sum(b => b.GetProperty("count").GetInt64()));

            // One latency value per delivered batch per subscriber: at least one per subscriber, at most one per message.
            var latency = Point(root, "daemoneye.bus.delivery.duration");
            var batches = latency.GetProperty("count").GetInt64();
            Assert.InRange(batches, Subscribers, Messages * Subscribers);
            Assert.Equal(batches, latency.GetProperty("buckets").EnumerateArray().Sum(b => b.GetProperty("count").GetInt64()));
            Assert.True(latency.GetProperty("sum").GetDouble() > 0);

            // The same figures from Prometheus, served by OpenTelemetry on loopback.
            var prometheus = root.GetProperty("prometheus");
            Assert.True(prometheus.GetProperty("enabled").GetBoolean());
            var url = prometheus.GetProperty("endpoint").GetString()!;
            Assert.StartsWith("http://127.0.0.1:", url);
            using var http = new HttpClient { Timeout = Patience };
            var scrape = Prometheus.Parse(await http.GetStringAsync(new Uri(url)));
            Assert.Equal(Messages, scrape.Value("daemoneye_bus_published_total", ("topic_root", "events")));
            Assert.Equal(Messages * Subscribers, scrape.Value("daemoneye_bus_delivered_total", ("topic_root", "events")));
            Assert.Equal(0, scrape.Value("daemoneye_bus_dropped_total"));
            Assert.Equal(Subscribers, scrape.Value("daemoneye_bus_subscriptions"));
            Assert.Equal(1, scrape.Value("daemoneye_rpc_requests_total", ("rpc_operation", "get_capabilities")));
            Assert.Equal(1, scrape.Value("daemoneye_rpc_errors_total", ("rpc_operation", "update_config"), ("error_kind", "not_found")));
            Assert.Equal(1, scrape.Value("daemoneye_rpc_duration_seconds_count", ("rpc_operation", "get_capabilities")));
            Assert.Equal(batches, scrape.Value("daemoneye_bus_delivery_duration_seconds_count"));
        }
        finally
        {
            foreach (var (client, _) in subscribers)
            {
                await client.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task With_enable_metrics_false_nothing_serves_Prometheus_and_the_CLI_still_reports()
    {
        await using var agent = await AgentProcess.StartAsync(new Dictionary<string, string> { ["DAEMONEYE_BROKER__ENABLE_METRICS"] = "false" });
        await using (var publisher = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = "metrics-off", AutoReconnect = false }))
        {
            await publisher.PublishAsync("events.metrics.off", Encoding.UTF8.GetBytes("x"));
            await publisher.FlushAsync();
        }

        var (code, stdout, stderr) = await CliProcess.RunAsync(agent.SocketPath, Patience, "metrics");
        Assert.True(code == 0, $"metrics exited {code}: {stderr}");
        Assert.Contains("prometheus: not served (broker.enable_metrics: false)", stdout);
        Assert.Contains("daemoneye.bus.published{topic.root=events} 1 {message}", stdout);

        // The only TCP listener left is the silo's own endpoint.
        Assert.Single(Listeners.Tcp(agent.Pid));
        Assert.DoesNotContain("Prometheus metrics served", agent.Log);
    }

    private static JsonElement Point(JsonElement root, string name, params (string Key, string Value)[] tags)
    {
        var metric = root.GetProperty("metrics").EnumerateArray().SingleOrDefault(m => m.GetProperty("name").GetString() == name);
        Assert.True(metric.ValueKind == JsonValueKind.Object, $"no metric {name}");
        var points = metric.GetProperty("points").EnumerateArray().Where(p =>
        {
            var t = p.GetProperty("tags");
            return t.EnumerateObject().Count() == tags.Length && tags.All(tag => t.TryGetProperty(tag.Key, out var v) && v.GetString() == tag.Value);
        }).ToList();
        Assert.True(points.Count == 1, $"{name}{{{string.Join(",", tags.Select(t => $"{t.Key}={t.Value}"))}}}: {points.Count} points in {metric}");
        return points[0];
    }

    private static double Value(JsonElement root, string name, params (string Key, string Value)[] tags) =>
        Point(root, name, tags).GetProperty("value").GetDouble();

    /// <summary>The Prometheus text format, parsed into samples (name, labels, value).</summary>
    private sealed class Prometheus
    {
        private readonly List<(string Name, Dictionary<string, string> Labels, double Value)> _samples = [];

        public static Prometheus Parse(string text)
        {
            var result = new Prometheus();
            foreach (var line in text.Split('\n'))
            {
                if (line.Length == 0 || line.StartsWith('#'))
                {
                    continue;
                }

                var brace = line.IndexOf('{', StringComparison.Ordinal);
                var space = line.LastIndexOf(' ');
                var name = brace >= 0 ? line[..brace] : line[..line.IndexOf(' ', StringComparison.Ordinal)];
                var labels = new Dictionary<string, string>();
                if (brace >= 0)
                {
                    var body = line[(brace + 1)..line.LastIndexOf('}')];
                    foreach (var pair in body.Split(',', StringSplitOptions.RemoveEmptyEntries))
                    {
                        var eq = pair.IndexOf('=', StringComparison.Ordinal);
                        labels[pair[..eq]] = pair[(eq + 2)..^1];
                    }
                }

                result._samples.Add((name, labels, double.Parse(line[(space + 1)..], CultureInfo.InvariantCulture)));
            }

            return result;
        }

        /// <summary>The one sample of <paramref name="name"/> with these labels (besides otel_scope_*).</summary>
        public double Value(string name, params (string Key, string Value)[] labels)
        {
            var matches = _samples.Where(s => s.Name == name
                && s.Labels.Keys.Count(k => !k.StartsWith("otel_scope_", StringComparison.Ordinal)) == labels.Length
                && labels.All(l => s.Labels.TryGetValue(l.Key, out var v) && v == l.Value)).ToList();
            Assert.True(matches.Count == 1, $"{name}: {matches.Count} samples with labels {string.Join(",", labels)}");
            return matches[0].Value;
        }
    }
}
