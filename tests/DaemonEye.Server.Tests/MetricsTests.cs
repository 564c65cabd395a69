using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using DaemonEye.Configuration;
using DaemonEye.Gateway;
using DaemonEye.Gateway.Health;
using DaemonEye.Gateway.Metrics;
using DaemonEye.Gateway.Rpc;
using DaemonEye.Gateway.Security;
using DaemonEye.Grains;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.V1;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace DaemonEye.Server.Tests;

/// <summary>The instruments and the agent's aggregator of them, driven through the real router and delivery accounting.</summary>
public sealed class MetricsTests : IDisposable
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 25, 12, 0, 0, TimeSpan.Zero));
    private readonly ServiceProvider _services = new ServiceCollection().AddMetrics().BuildServiceProvider();
    private readonly MetricsAggregator _aggregator;
    private readonly RpcMetrics _rpcMetrics;

    public MetricsTests()
    {
        var meters = _services.GetRequiredService<IMeterFactory>();
        _aggregator = new MetricsAggregator(meters);
        _rpcMetrics = new RpcMetrics(meters);
    }

    public void Dispose()
    {
        _aggregator.Dispose();
        _services.Dispose();
    }

    private static MetricPoint Point(IReadOnlyList<Metric> snapshot, string name, params (string Key, string Value)[] tags)
    {
        var metric = Assert.Single(snapshot, m => m.Name == name);
        return Assert.Single(metric.Points, p => p.Tags.Count == tags.Length && tags.All(t => p.Tags.TryGetValue(t.Key, out var v) && v == t.Value));
    }

    [Fact]
    public void RPC_counts_by_operation_status_and_error_kind_are_exact()
    {
        using var router = new RpcRouter(Options.Create(new RpcOptions { DefaultTimeoutSeconds = 30, MaxPendingRequests = 10 }), _time, new DaemonEye.Gateway.Collectors.CollectorDirectory(_time, TimeSpan.FromSeconds(5)), NullLogger<RpcRouter>.Instance, _rpcMetrics);
        var caller = new Peer(1, "cli");
        var collector = new Peer(2, "procmond");
        Assert.True(router.TryRegisterCollector(collector, new CollectorPresence("procmond", 2, 4242, 0, []), out _));

        // Two answered health checks (one ok, one the collector's own error), one timed out, one for a collector that does not exist.
        router.HandleRequest(caller, Request("a", RpcOperation.HealthCheck));
        router.HandleRequest(caller, Request("b", RpcOperation.HealthCheck));
        router.HandleRequest(caller, Request("c", RpcOperation.UpdateConfig, timeoutMs: 1000));
        router.HandleRequest(caller, Request("d", RpcOperation.GetCapabilities, target: "control.collector.ghost"));
        router.HandleResponse(collector, new RpcResponse { Correlation = collector.Requests[0].Correlation, Status = RpcStatus.Ok });
        router.HandleResponse(collector, new RpcResponse { Correlation = collector.Requests[1].Correlation, Status = RpcStatus.Error, Error = new RpcError { Kind = RpcErrorKind.ExecutionError } });
        _time.Advance(TimeSpan.FromSeconds(2));
        router.Sweep();
        // A late answer to the call that timed out.
        router.HandleResponse(collector, new RpcResponse { Correlation = collector.Requests[2].Correlation, Status = RpcStatus.Ok });

        var s = _aggregator.Snapshot();
        Assert.Equal(2, Point(s, MetricNames.RpcRequests, ("rpc.operation", "health_check")).Value);
        Assert.Equal(1, Point(s, MetricNames.RpcRequests, ("rpc.operation", "update_config")).Value);
        Assert.Equal(1, Point(s, MetricNames.RpcRequests, ("rpc.operation", "get_capabilities")).Value);
        Assert.Equal(1, Point(s, MetricNames.RpcResponses, ("rpc.operation", "health_check"), ("rpc.status", "ok")).Value);
        Assert.Equal(1, Point(s, MetricNames.RpcResponses, ("rpc.operation", "health_check"), ("rpc.status", "error")).Value);
        Assert.Equal(1, Point(s, MetricNames.RpcErrors, ("rpc.operation", "health_check"), ("error.kind", "execution_error")).Value);
        Assert.Equal(1, Point(s, MetricNames.RpcErrors, ("rpc.operation", "update_config"), ("error.kind", "timeout")).Value);
        Assert.Equal(1, Point(s, MetricNames.RpcErrors, ("rpc.operation", "get_capabilities"), ("error.kind", "not_found")).Value);
        Assert.Equal(3, Assert.Single(s, m => m.Name == MetricNames.RpcErrors).Points.Count);
        Assert.Equal(1, Point(s, MetricNames.RpcLateResponses).Value);
        Assert.Equal(0, Point(s, MetricNames.RpcPending).Value);
        Assert.Equal(1, Point(s, MetricNames.CollectorsConnected).Value);
        Assert.Equal(3, _rpcMetrics.ErrorsTotal);

        var duration = Point(s, MetricNames.RpcDuration, ("rpc.operation", "health_check"));
        Assert.Equal(2ul, duration.Count);
        Assert.Equal(2ul, duration.BucketCounts.Aggregate(0ul, (a, b) => a + b));
        Assert.Equal(MetricNames.LatencyBuckets.Length + 1, duration.BucketCounts.Count);
    }

    [Fact]
    public void Delivery_counts_by_topic_root_and_records_one_latency_per_flushed_batch()
    {
        var stats = new GatewayStatistics();
        var bus = new BusMetrics(_services.GetRequiredService<IMeterFactory>(), stats, new ConnectionDirectory());
        var delivery = bus.NewDeliveryMeter();
        var read = Stopwatch.GetTimestamp();

        delivery.Written(Batch("events.process.lifecycle", 3, read), 3);
        delivery.Written(Batch("events.process.lifecycle", 2, read), 2);
        delivery.Flushed();
        delivery.Written(Batch("control.health.status", 1, readTimestamp: 0), 1); // published by the agent: no latency
        delivery.Flushed();
        bus.PublishedCounter("events.process.lifecycle").Add(5);
        stats.AddDenied(AccessRule.CollectorPublish);
        stats.AddDenied(AccessRule.CollectorPublish);
        stats.AddDenied(AccessRule.SubscriberRpcCall);

        var s = _aggregator.Snapshot();
        Assert.Equal(5, Point(s, MetricNames.Delivered, ("topic.root", "events")).Value);
        Assert.Equal(1, Point(s, MetricNames.Delivered, ("topic.root", "control")).Value);
        Assert.Equal(5, Point(s, MetricNames.Published, ("topic.root", "events")).Value);
        Assert.Equal(2ul, Point(s, MetricNames.DeliveryDuration).Count);
        Assert.Equal(2, Point(s, MetricNames.Denied, ("rule", AccessRules.Name(AccessRule.CollectorPublish))).Value);
        Assert.Equal(1, Point(s, MetricNames.Denied, ("rule", AccessRules.Name(AccessRule.SubscriberRpcCall))).Value);
        Assert.Equal(2, Assert.Single(s, m => m.Name == MetricNames.Denied).Points.Count);
        Assert.Equal(3, bus.DeniedTotal);
        Assert.Equal(0, Point(s, MetricNames.Subscriptions).Value);
        Assert.Equal(0, Point(s, MetricNames.BufferUtilization).Value);
    }

    [Fact]
    public void Histogram_buckets_hold_values_up_to_and_including_their_bound()
    {
        using var meter = _services.GetRequiredService<IMeterFactory>().Create(MetricNames.BusMeter);
        var histogram = meter.CreateHistogram<double>("daemoneye.test.duration", "s");
        histogram.Record(0.001);   // exactly a bound: that bucket
        histogram.Record(0.0011);  // just above: the next
        histogram.Record(100);     // above every bound: the overflow bucket

        var point = Point(_aggregator.Snapshot(), "daemoneye.test.duration");
        var at = Array.IndexOf(MetricNames.LatencyBuckets, 0.001);
        Assert.Equal(3ul, point.Count);
        Assert.Equal(100.0021, point.Sum, 6);
        Assert.Equal(1ul, point.BucketCounts[at]);
        Assert.Equal(1ul, point.BucketCounts[at + 1]);
        Assert.Equal(1ul, point.BucketCounts[^1]);
    }

    [Fact]
    public void Topic_roots_beyond_the_bound_share_other()
    {
        var roots = new TopicRootCounters();
        for (var i = 0; i < TopicRootCounters.MaxRoots + 5; i++)
        {
            roots.For($"r{i}.x").Add(1);
        }

        Assert.Equal(TopicRootCounters.MaxRoots + 1, roots.All.Count());
        Assert.Equal(5, roots.All.Single(r => r.Key == TopicRootCounters.Overflow).Value.Value);
    }

    [Fact]
    public void The_error_rate_is_the_last_windows_errors_over_the_whole_window()
    {
        var start = _time.GetUtcNow();
        var window = new ErrorRateWindow(TimeSpan.FromSeconds(60));
        window.Sample(start, 0);

        // A young agent: 3 errors in its first 10 s are 3 per 60 s, not per 10 s.
        Assert.Equal((3, 0.05), window.Evaluate(start.AddSeconds(10), 3));

        for (var t = 15; t <= 120; t += 5)
        {
            window.Sample(start.AddSeconds(t), t <= 30 ? 3 : 9);
        }

        // At 120 s the baseline is the newest sample at least 60 s old (t = 60: 9 errors): none since.
        Assert.Equal((0, 0.0), window.Evaluate(start.AddSeconds(120), 9));
        Assert.Equal((6, 0.1), window.Evaluate(start.AddSeconds(121), 15));
    }

    [Fact]
    public void Health_options_name_every_bad_value()
    {
        var errors = new HealthOptions { MaxErrorRatePerSecond = -1, ErrorRateWindowSeconds = 0, ProbeTimeoutSeconds = double.NaN, BufferDegradedPercent = 101 }.Validate().ToList();

        Assert.Equal(
        [
            "health.max_error_rate_per_second is -1; allowed: 0 to 1000000 (errors per second)",
            "health.error_rate_window_seconds is 0; allowed: 1 to 86400",
            "health.probe_timeout_seconds is NaN; allowed: 0.01 to 300",
            "health.buffer_degraded_percent is 101; allowed: 1 to 100",
        ], errors);
        Assert.Empty(new HealthOptions().Validate());
        Assert.Equal(["broker.metrics_port is 70000; allowed: 0 (pick a free port) or 1 to 65535"], new BrokerOptions { MetricsPort = 70000 }.Validate());
    }

    private static PublishBatch Batch(string topic, int count, long readTimestamp) =>
        new(topic, new byte[count], [.. Enumerable.Range(1, count)], count, 1, readTimestamp);

    private static RpcRequest Request(string id, RpcOperation operation, uint timeoutMs = 0, string target = "control.collector.procmond") => new()
    {
        Correlation = new CorrelationMetadata { CorrelationId = id, RootCorrelationId = id },
        Operation = operation,
        Target = target,
        TimeoutMs = timeoutMs,
    };

    private sealed class Peer(long id, string name) : IRpcPeer
    {
        private readonly ConcurrentQueue<RpcRequest> _requests = new();

        public long Id => id;

        public string Name => name;

        public List<RpcRequest> Requests => [.. _requests];

        public void DeliverRequest(RpcRequest request) => _requests.Enqueue(request);

        public void DeliverResponse(RpcResponse response)
        {
        }
    }
}
