using System.Diagnostics.Metrics;
using DaemonEye.Protocol.V1;

namespace DaemonEye.Gateway.Metrics;

/// <summary>
/// RPC instruments (meter <c>DaemonEye.Rpc</c>) and collector instruments (meter
/// <c>DaemonEye.Collectors</c>). Counts by operation and by error kind sit in fixed arrays indexed
/// by the enum values (bounded cardinality, a plain interlocked add per call); observable counters
/// report them. The round-trip histogram records once per answered call.
/// </summary>
public sealed class RpcMetrics
{
    // Enum values beyond these share the last slot: cardinality stays bounded whatever a peer sends.
    private const int Operations = 16;
    private const int Kinds = 16;

    private static readonly KeyValuePair<string, object?>[] OperationTags = [.. Enumerable.Range(0, Operations).Select(i => new KeyValuePair<string, object?>(MetricNames.OperationTag, OperationName(i)))];

    private readonly Meter _meter;
    private readonly Meter _collectors;
    private readonly long[] _requests = new long[Operations];
    private readonly long[] _ok = new long[Operations];
    private readonly long[] _failed = new long[Operations];
    private readonly long[] _errors = new long[Operations * Kinds];
    private readonly long[] _invalidPayloads = new long[Operations];
    private readonly Histogram<double> _duration;
    private long _late;
    private long _heartbeats;
    private long _errorsTotal;
    private Func<int> _pending = () => 0;
    private Func<int> _connected = () => 0;

    public RpcMetrics(IMeterFactory meters)
    {
        _meter = meters.Create(MetricNames.RpcMeter);
        _meter.CreateObservableCounter(MetricNames.RpcRequests, () => ByOperation(_requests, null), "{request}",
            "RPC requests received by the router (from clients, collectors and the agent itself), by operation");
        _meter.CreateObservableCounter(MetricNames.RpcResponses, ObserveResponses, "{response}",
            "RPC responses routed back to their caller from the callee, by operation and status (ok or error)");
        _meter.CreateObservableCounter(MetricNames.RpcErrors, ObserveErrors, "{error}",
            "Failed RPC calls by operation and error kind: refused by the router, timed out, callee disconnected, or answered with an error");
        _duration = _meter.CreateHistogram(MetricNames.RpcDuration, "s",
            "RPC round trip inside the agent: from the router receiving the request to it receiving the callee's response, by operation",
            tags: null, advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = MetricNames.LatencyBuckets });
        _meter.CreateObservableUpDownCounter(MetricNames.RpcPending, () => _pending(), "{request}",
            "RPC calls pending now (bounded by rpc.max_pending_requests)");
        _meter.CreateObservableCounter(MetricNames.RpcInvalidPayloads, () => ByOperation(_invalidPayloads, null), "{request}",
            "RPC requests refused by the router before forwarding because their payload did not fit the operation's schema, by operation");
        _meter.CreateObservableCounter(MetricNames.RpcLateResponses, () => Interlocked.Read(ref _late), "{response}",
            "Responses discarded because their call had already ended (timed out) or was not the sender's to answer");
        _collectors = meters.Create(MetricNames.CollectorsMeter);
        _collectors.CreateObservableUpDownCounter(MetricNames.CollectorsConnected, () => _connected(), "{collector}",
            "Collectors registered on the bus now");
        _collectors.CreateObservableCounter(MetricNames.CollectorHeartbeats, () => Interlocked.Read(ref _heartbeats), "{heartbeat}",
            "Heartbeats collectors published on their control.health.heartbeat.<id> topic");
    }

    /// <summary>Every RPC error so far (all operations and kinds); part of the health check's error rate.</summary>
    public long ErrorsTotal => Interlocked.Read(ref _errorsTotal);

    /// <summary>Where the pending and connected gauges read from (the router, once it exists).</summary>
    internal void Attach(Func<int> pending, Func<int> connected)
    {
        _pending = pending;
        _connected = connected;
    }

    internal void Request(RpcOperation operation) => Interlocked.Increment(ref _requests[Slot(operation)]);

    /// <summary>A call failed without a response from the callee: refused, timed out, or the callee went away.</summary>
    internal void Error(RpcOperation operation, RpcErrorKind kind)
    {
        Interlocked.Increment(ref _errors[(Slot(operation) * Kinds) + KindSlot(kind)]);
        Interlocked.Increment(ref _errorsTotal);
    }

    /// <summary>The callee answered a pending call after <paramref name="elapsed"/>.</summary>
    internal void Response(RpcOperation operation, RpcResponse response, TimeSpan elapsed)
    {
        var slot = Slot(operation);
        if (response.Status == RpcStatus.Error)
        {
            Interlocked.Increment(ref _failed[slot]);
            Error(operation, response.Error?.Kind ?? RpcErrorKind.Unspecified);
        }
        else
        {
            Interlocked.Increment(ref _ok[slot]);
        }

        _duration.Record(elapsed.TotalSeconds, OperationTags[slot]);
    }

    /// <summary>A request refused for its payload (counted in <see cref="Error"/> as well, as InvalidOperation).</summary>
    internal void InvalidPayload(RpcOperation operation) => Interlocked.Increment(ref _invalidPayloads[Slot(operation)]);

    internal void Late() => Interlocked.Increment(ref _late);

    internal void Heartbeat() => Interlocked.Increment(ref _heartbeats);

    private static int Slot(RpcOperation operation) => Math.Clamp((int)operation, 0, Operations - 1);

    private static int KindSlot(RpcErrorKind kind) => Math.Clamp((int)kind, 0, Kinds - 1);

    /// <summary>"health_check", "execute_task"...: the enum's proto name without its prefix, lower case.</summary>
    internal static string OperationName(int value) => Enum.IsDefined((RpcOperation)value)
        ? Snake(((RpcOperation)value).ToString())
        : value == Operations - 1 ? "other" : $"operation_{value}";

    internal static string KindName(int value) => Enum.IsDefined((RpcErrorKind)value)
        ? Snake(((RpcErrorKind)value).ToString())
        : value == Kinds - 1 ? "other" : $"kind_{value}";

    private static string Snake(string pascal) =>
        string.Concat(pascal.Select((c, i) => char.IsUpper(c) ? (i > 0 ? "_" : string.Empty) + char.ToLowerInvariant(c) : c.ToString()));

    private static IEnumerable<Measurement<long>> ByOperation(long[] counts, KeyValuePair<string, object?>? extra)
    {
        for (var i = 0; i < counts.Length; i++)
        {
            var n = Interlocked.Read(ref counts[i]);
            if (n != 0)
            {
                yield return extra is { } tag ? new Measurement<long>(n, OperationTags[i], tag) : new Measurement<long>(n, OperationTags[i]);
            }
        }
    }

    private IEnumerable<Measurement<long>> ObserveResponses() =>
        ByOperation(_ok, new KeyValuePair<string, object?>(MetricNames.StatusTag, "ok"))
            .Concat(ByOperation(_failed, new KeyValuePair<string, object?>(MetricNames.StatusTag, "error")));

    private IEnumerable<Measurement<long>> ObserveErrors()
    {
        for (var op = 0; op < Operations; op++)
        {
            for (var kind = 0; kind < Kinds; kind++)
            {
                var n = Interlocked.Read(ref _errors[(op * Kinds) + kind]);
                if (n != 0)
                {
                    yield return new Measurement<long>(n, OperationTags[op], new KeyValuePair<string, object?>(MetricNames.ErrorKindTag, KindName(kind)));
                }
            }
        }
    }
}
