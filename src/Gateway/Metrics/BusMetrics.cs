using System.Diagnostics;
using System.Diagnostics.Metrics;
using DaemonEye.Grains;

namespace DaemonEye.Gateway.Metrics;

/// <summary>
/// The bus's instruments (meter <c>DaemonEye.Bus</c>). Counters the hot path already keeps
/// (<see cref="GatewayStatistics"/>, per-connection queues) are read by observable instruments
/// when someone collects; the publish and deliver paths add to per-topic-root tallies with one
/// interlocked add per batch. Only the delivery latency histogram records on the data path, once
/// per delivered batch per subscriber, after the socket write.
/// </summary>
public sealed class BusMetrics
{
    private readonly Meter _meter;
    private readonly TopicRootCounters _published = new();
    private readonly TopicRootCounters _delivered = new();
    private readonly Histogram<double> _deliveryDuration;
    private readonly GatewayStatistics _stats;

    internal BusMetrics(IMeterFactory meters, GatewayStatistics stats, ConnectionDirectory connections)
    {
        _stats = stats;
        _meter = meters.Create(MetricNames.BusMeter);
        _meter.CreateObservableCounter(MetricNames.Published, () => Observe(_published), "{message}",
            "Publish frames read from clients and handed to their Topic grain, by topic root");
        _meter.CreateObservableCounter(MetricNames.Delivered, () => Observe(_delivered), "{message}",
            "Deliver frames written to subscriber connections, by topic root (one per message per subscribing connection)");
        _meter.CreateObservableCounter(MetricNames.Dropped, () => stats.Dropped, "{message}",
            "Messages dropped because a subscriber's outbound buffer (broker.message_buffer_size) was full");
        _meter.CreateObservableCounter(MetricNames.Unrouted, () => stats.Unrouted, "{message}",
            "Published messages that could not be routed because the grain call failed");
        _meter.CreateObservableCounter(MetricNames.ProtocolErrors, () => stats.ProtocolErrors, "{error}",
            "Frames refused as malformed, oversized, truncated, out of protocol, or publishes on an invalid topic");
        _meter.CreateObservableCounter(MetricNames.Denied, ObserveDenied, "{action}", "Actions refused by an access rule (security), by rule");
        _meter.CreateObservableCounter(MetricNames.Limited, ObserveLimited, "{refusal}",
            "Connections and requests refused or cut by a configured limit (timeouts, connection caps, failed accepts...), by the limit's key");
        _deliveryDuration = _meter.CreateHistogram(MetricNames.DeliveryDuration, "s",
            "From the gateway's socket read that held a Publish to the flush of its Deliver frame to the subscriber's socket; one value per delivered batch per subscriber",
            tags: null, advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = MetricNames.LatencyBuckets });
        _meter.CreateObservableUpDownCounter(MetricNames.Connections, () => Math.Max(0, stats.ConnectionsOpen), "{connection}",
            "Bus connections open now");
        _meter.CreateObservableCounter(MetricNames.ConnectionsAccepted, () => stats.ConnectionsAccepted, "{connection}",
            "Bus connections accepted since start");
        _meter.CreateObservableUpDownCounter(MetricNames.Subscriptions, () => Sum(connections, c => c.SubscriptionCount), "{subscription}",
            "Subscriptions held now, over all connections");
        _meter.CreateObservableUpDownCounter(MetricNames.Subscribers, () => Sum(connections, c => c.SubscriptionCount > 0 ? 1 : 0), "{connection}",
            "Connections holding at least one subscription now");
        _meter.CreateObservableUpDownCounter(MetricNames.BufferQueued, () => Sum(connections, c => c.Queued), "{message}",
            "Messages waiting in subscribers' outbound buffers now, over all connections");
        _meter.CreateObservableGauge(MetricNames.BufferUtilization, () => MaxUtilization(connections), "1",
            "The fullest outbound buffer now, 0 to 1: the larger of queued messages / broker.message_buffer_size and queued bytes / broker.max_outbound_bytes");
        _meter.CreateObservableUpDownCounter(MetricNames.BufferQueuedBytes, () => SumBytes(connections), "By",
            "Bytes waiting in clients' outbound buffers now, over all connections");
        _meter.CreateObservableUpDownCounter(MetricNames.BuffersFull, () => Sum(connections, c => c.Queued >= c.BufferCapacity ? 1 : 0), "{connection}",
            "Connections whose outbound buffer is full now (their next messages are dropped)");
    }

    /// <summary>Every denied action so far (all access rules); part of the health check's error rate.</summary>
    public long DeniedTotal => Security.AccessRules.All.Sum(_stats.DeniedBy);

    /// <summary>The tally of published messages for <paramref name="topic"/>'s root; keep it with the topic.</summary>
    internal TallyCounter PublishedCounter(string topic) => _published.For(topic);

    /// <summary>A connection's delivery side: per-root counts and latency, owned by its write loop.</summary>
    internal DeliveryMeter NewDeliveryMeter() => new(this);

    internal TallyCounter DeliveredCounter(string topic) => _delivered.For(topic);

    internal void RecordDelivery(double seconds) => _deliveryDuration.Record(seconds);

    internal bool DeliveryDurationEnabled => _deliveryDuration.Enabled;

    /// <summary>The access rules' denial counts that GatewayStatistics keeps, one series per rule that has denied something.</summary>
    private IEnumerable<Measurement<long>> ObserveDenied()
    {
        foreach (var rule in Security.AccessRules.All)
        {
            var n = _stats.DeniedBy(rule);
            if (n != 0)
            {
                yield return new Measurement<long>(n, new KeyValuePair<string, object?>(MetricNames.RuleTag, Security.AccessRules.Name(rule)));
            }
        }
    }

    /// <summary>The limits' refusal counts that GatewayStatistics keeps, one series per limit that has refused something.</summary>
    private IEnumerable<Measurement<long>> ObserveLimited()
    {
        foreach (var limit in Security.Limits.All)
        {
            var n = _stats.RefusedBy(limit);
            if (n != 0)
            {
                yield return new Measurement<long>(n, new KeyValuePair<string, object?>(MetricNames.LimitTag, Security.Limits.Name(limit)));
            }
        }
    }

    private static IEnumerable<Measurement<long>> Observe(TopicRootCounters counters)
    {
        foreach (var (root, counter) in counters.All)
        {
            yield return new Measurement<long>(counter.Value, new KeyValuePair<string, object?>(MetricNames.TopicRootTag, root));
        }
    }

    private static long Sum(ConnectionDirectory connections, Func<BusConnection, long> value)
    {
        long sum = 0;
        foreach (var c in connections.Connections)
        {
            sum += value(c);
        }

        return sum;
    }

    private static long SumBytes(ConnectionDirectory connections)
    {
        long sum = 0;
        foreach (var c in connections.Connections)
        {
            sum += c.QueuedBytes;
        }

        return sum;
    }

    private static double MaxUtilization(ConnectionDirectory connections)
    {
        double max = 0;
        foreach (var c in connections.Connections)
        {
            var fill = Math.Max((double)c.Queued / c.BufferCapacity, (double)c.QueuedBytes / c.BufferBytesCapacity);
            max = Math.Max(max, Math.Min(1.0, fill));
        }

        return max;
    }
}

/// <summary>
/// One connection's delivery accounting, used by its write loop only (single-threaded): counts
/// each delivered batch to its topic root (the counter cached per topic string, so a hot topic
/// costs a reference compare) and remembers when each batch was read so the flush that puts it on
/// the socket can record <c>daemoneye.bus.delivery.duration</c>.
/// </summary>
internal sealed class DeliveryMeter(BusMetrics metrics)
{
    private readonly List<long> _written = [];
    private string? _topic;
    private TallyCounter? _counter;

    /// <summary>A batch's Deliver frames were written to the connection's pipe.</summary>
    public void Written(PublishBatch batch, int count)
    {
        if (!ReferenceEquals(batch.Topic, _topic))
        {
            _topic = batch.Topic;
            _counter = metrics.DeliveredCounter(batch.Topic);
        }

        _counter!.Add(count);
        // Batches the agent published itself were never read from a socket: no latency to report.
        if (batch.ReadTimestamp != 0 && metrics.DeliveryDurationEnabled)
        {
            _written.Add(batch.ReadTimestamp);
        }
    }

    /// <summary>The pipe was flushed to the socket: every batch written since the last flush has arrived.</summary>
    public void Flushed()
    {
        if (_written.Count == 0)
        {
            return;
        }

        var now = Stopwatch.GetTimestamp();
        foreach (var read in _written)
        {
            metrics.RecordDelivery(Stopwatch.GetElapsedTime(read, now).TotalSeconds);
        }

        _written.Clear();
    }
}
