using System.Globalization;
using System.Text;
using System.Text.Json;
using DaemonEye.Client;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.V1;
using static DaemonEye.EndToEnd.Tests.MetricsReader;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// A known workload through the real agent, then its metrics read two ways: <c>daemoneye-cli
/// metrics --json</c> (the agent's own aggregator over IPC) and the Prometheus endpoint
/// (OpenTelemetry, broker.enable_metrics, on the broker.metrics_port configured) — the same exact
/// values from both; and a slow subscriber's drops and buffer as metrics and health report them.
/// </summary>
public sealed class MetricsEndToEndTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private const int Messages = 500;
    private const int Subscribers = 3;

    [Fact]
    public async Task After_a_known_workload_the_CLI_and_Prometheus_report_its_exact_counts()
    {
        var metricsPort = DashboardEndToEndTests.FreePort();
        await using var agent = await AgentProcess.StartAsync(new Dictionary<string, string>(TestTokens.AgentSettings("tc-metrics"))
        {
            ["DAEMONEYE_BROKER__METRICS_PORT"] = metricsPort.ToString(CultureInfo.InvariantCulture),
        });
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

            // Denied actions: a read-only subscriber publishes twice, a client publishes on a control topic once.
            await using var reader = await RawBus.ConnectAsync(agent.SocketPath, "metrics-read-only", Role.Subscriber);
            await using var client = await RawBus.ConnectAsync(agent.SocketPath, "metrics-client", Role.Client);
            Assert.Equal(ErrorCode.NotAuthorized, (await reader.PublishAsync("events.metrics.denied"))?.Code);
            Assert.Equal(ErrorCode.NotAuthorized, (await reader.PublishAsync("events.metrics.denied"))?.Code);
            Assert.Equal(ErrorCode.NotAuthorized, (await client.PublishAsync("control.metrics.denied"))?.Code);

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
            Assert.Equal(2, Value(root, "daemoneye.bus.denied", ("rule", "subscriber.publish")));
            Assert.Equal(1, Value(root, "daemoneye.bus.denied", ("rule", "client.publish_control")));
            Assert.Equal(2, root.GetProperty("metrics").EnumerateArray().Single(m => m.GetProperty("name").GetString() == "daemoneye.bus.denied").GetProperty("points").GetArrayLength());
            // The subscribers, the publisher, the collector and the two denied connections.
            Assert.Equal(Subscribers + 4, Value(root, "daemoneye.bus.connections"));
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
            Assert.Equal($"http://127.0.0.1:{metricsPort}/metrics", url);
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
            Assert.Equal(2, scrape.Value("daemoneye_bus_denied_total", ("rule", "subscriber.publish")));
            Assert.Equal(1, scrape.Value("daemoneye_bus_denied_total", ("rule", "client.publish_control")));
        }
        finally
        {
            foreach (var (client, _) in subscribers)
            {
                await client.DisposeAsync();
            }
        }
    }

    /// <summary>
    /// A subscriber that stops reading. Its outbound buffer fills: buffer metrics move and health's
    /// buffers check is degraded at health.buffer_degraded_percent (exit 1). It overflows: unhealthy
    /// (exit 2) and messages are dropped. Once it reads again, the Dropped notices it was sent add up to
    /// daemoneye.bus.dropped, its deliveries plus drops to what was published, and the buffer is empty.
    /// </summary>
    [Fact]
    public async Task A_stalled_subscribers_buffer_and_drops_show_in_metrics_and_health_as_the_subscriber_was_told()
    {
        const int Capacity = 100;
        const int DegradedPercent = 10;
        await using var agent = await AgentProcess.StartAsync(new Dictionary<string, string>
        {
            ["DAEMONEYE_BROKER__MESSAGE_BUFFER_SIZE"] = Capacity.ToString(CultureInfo.InvariantCulture),
            ["DAEMONEYE_HEALTH__BUFFER_DEGRADED_PERCENT"] = DegradedPercent.ToString(CultureInfo.InvariantCulture),
        });

        // A raw subscriber that reads nothing until the end: once its socket holds what the kernel
        // takes, further messages wait in its buffer in the agent.
        await using var stalled = await RawBus.ConnectAsync(agent.SocketPath, "stalled", Role.Subscriber);
        Assert.Equal(Envelope.BodyOneofCase.SubscribeAck, (await stalled.SubscribeAsync("events.stall.#")).BodyCase);
        await using var publisher = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = "stall-pub", AutoReconnect = false });
        var payload = new byte[32 * 1024];
        var published = 0;
        async Task<double> PublishAsync(int count)
        {
            for (var i = 0; i < count; i++, published++)
            {
                await publisher.PublishAsync("events.stall.load", payload);
            }

            await publisher.FlushAsync().WaitAsync(Patience);
            return ValueOrZero(await SnapshotAsync(agent), "daemoneye.bus.buffer.queued");
        }

        // Filling, in steps of 10 until 30 or more wait (the first ones go into the kernel's socket buffer).
        var queued = await PublishAsync(10);
        while (queued < 30)
        {
            Assert.True(published < 2000, $"{published} messages of 32 KiB published, only {queued} wait in the buffer");
            queued = await PublishAsync(10);
        }

        var filling = await SnapshotAsync(agent);
        Assert.InRange(ValueOrZero(filling, "daemoneye.bus.buffer.utilization"), DegradedPercent / 100.0, 0.99);
        Assert.Equal(0, ValueOrZero(filling, "daemoneye.bus.buffer.full"));
        Assert.Equal(0, ValueOrZero(filling, "daemoneye.bus.dropped"));
        var (code, lines, stderr) = await CliProcess.RunAsync(agent.SocketPath, Patience, "health");
        Assert.True(code == 1, $"health exited {code}\n{string.Join('\n', lines)}\n{stderr}");
        var buffers = Assert.Single(lines, l => l.StartsWith("buffers ", StringComparison.Ordinal));
        var fill = System.Text.RegularExpressions.Regex.Match(buffers, @"^buffers\s+degraded\s+fullest c\d+ \(stalled\) (\d+)/100 messages, \d+/67108864 bytes \([\d.]+ %\); peaks \d+ messages \(c\d+\), \d+ bytes \(c\d+\), at or above health\.buffer_degraded_percent \(10 %\); 0 dropped, 0 client\(s\) cut off for not reading \(broker\.max_outbound_bytes\) since start$");
        Assert.True(fill.Success, buffers);
        Assert.InRange(int.Parse(fill.Groups[1].Value, CultureInfo.InvariantCulture), DegradedPercent, Capacity - 1);
        Assert.Equal("overall: degraded", lines[^1]);

        // Overflowing: 200 more cannot all fit.
        await PublishAsync(200);
        var overflowing = await SnapshotAsync(agent);
        Assert.Equal(1, ValueOrZero(overflowing, "daemoneye.bus.buffer.utilization"));
        Assert.Equal(1, ValueOrZero(overflowing, "daemoneye.bus.buffer.full"));
        Assert.Equal(Capacity, ValueOrZero(overflowing, "daemoneye.bus.buffer.queued"));
        var droppedWhileFull = ValueOrZero(overflowing, "daemoneye.bus.dropped");
        Assert.True(droppedWhileFull > 0, "nothing dropped");
        (code, lines, stderr) = await CliProcess.RunAsync(agent.SocketPath, Patience, "health");
        Assert.True(code == 2, $"health exited {code}\n{string.Join('\n', lines)}\n{stderr}");
        Assert.Matches(@"^buffers\s+unhealthy\s+1 subscriber buffer\(s\) full, their messages are being dropped: c\d+ \(stalled\); \d+ dropped, 0 client\(s\) cut off for not reading \(broker\.max_outbound_bytes\) since start$", Assert.Single(lines, l => l.StartsWith("buffers ", StringComparison.Ordinal)));

        // Reading again: everything up to the Pong, Dropped notices among the deliveries.
        var frames = await stalled.SettleAsync();
        var delivered = frames.Count(f => f.BodyCase == Envelope.BodyOneofCase.Deliver);
        var notices = frames.Where(f => f.BodyCase == Envelope.BodyOneofCase.Dropped).Select(f => f.Dropped).ToList();
        Assert.NotEmpty(notices);
        var told = notices.Sum(n => (long)n.Count);
        Assert.Equal((ulong)told, notices[^1].Total);
        Assert.Equal(published, delivered + told);
        Assert.Equal(droppedWhileFull, told);

        (code, var stdout, stderr) = await CliProcess.RunAsync(agent.SocketPath, Patience, "metrics", "--json");
        Assert.True(code == 0, $"metrics exited {code}: {stderr}");
        using var json = JsonDocument.Parse(string.Join('\n', stdout));
        Assert.Equal(told, Value(json.RootElement, "daemoneye.bus.dropped"));
        Assert.Equal(published, Value(json.RootElement, "daemoneye.bus.published", ("topic.root", "events")));
        Assert.Equal(delivered, Value(json.RootElement, "daemoneye.bus.delivered", ("topic.root", "events")));
        Assert.Equal(0, Value(json.RootElement, "daemoneye.bus.buffer.queued"));
        Assert.Equal(0, Value(json.RootElement, "daemoneye.bus.buffer.utilization"));
        Assert.Equal(0, Value(json.RootElement, "daemoneye.bus.buffer.full"));

        var health = (await IpcProbe.SendAsync(agent.IpcSocketPath, new IpcRequest { Health = new HealthRequest() })).Health;
        Assert.Equal(HealthStatus.Healthy, health.Checks.Single(c => c.Name == "buffers").Status);
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

        // No TCP listener at all: the silo opens no socket (ClosedSilo), and the dashboard is off.
        Assert.Empty(Listeners.Tcp(agent.Pid));
        Assert.DoesNotContain("Prometheus metrics served", agent.Log);
    }

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
