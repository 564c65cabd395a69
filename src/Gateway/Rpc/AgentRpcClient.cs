using System.Collections.Concurrent;
using DaemonEye.Protocol.V1;
using Google.Protobuf;

namespace DaemonEye.Gateway.Rpc;

/// <summary>The agent's own RPC calls to collectors (the supervisor's Stop, HealthCheck...).</summary>
public interface IAgentRpc
{
    /// <summary>
    /// Calls a collector and returns its response, or an error response (Timeout, NotFound,
    /// CommunicationError, ResourceExhausted...) — never throws for a failed call.
    /// </summary>
    /// <param name="collectorId">The collector to call.</param>
    /// <param name="operation">What to ask of it.</param>
    /// <param name="payload">The operation's payload, if it has one.</param>
    /// <param name="timeout">How long to wait; null means rpc.default_timeout_seconds.</param>
    /// <param name="parent">The call or message this one serves: the request gets child correlation
    /// metadata (parent = its id, same root, next sequence number).</param>
    /// <param name="cancellationToken">Stops waiting (the call still times out in the router).</param>
    Task<RpcResponse> CallAsync(string collectorId, RpcOperation operation, ByteString? payload = null, TimeSpan? timeout = null, CorrelationMetadata? parent = null, CancellationToken cancellationToken = default);

    /// <summary>Collectors connected to the bus now.</summary>
    IReadOnlyCollection<string> ConnectedCollectors { get; }

    CollectorPresence? FindCollector(string collectorId);

    RpcStatistics Statistics { get; }
}

/// <summary>The agent as an RPC caller: a peer of the router that lives in-process.</summary>
internal sealed class AgentRpcClient(RpcRouter router, TimeProvider time, Microsoft.Extensions.Options.IOptions<DaemonEye.Configuration.RpcOptions> options) : IAgentRpc, IRpcPeer
{
    // rpc.enable_correlation_tracking: agent-made calls join their parent's chain (parent id, root, sequence);
    // off, every call starts a chain of its own.
    private readonly bool _tracking = options.Value.EnableCorrelationTracking;

    private readonly ConcurrentDictionary<string, TaskCompletionSource<RpcResponse>> _waiting = new(StringComparer.Ordinal);

    public long Id => 0;

    public bool IsAgent => true;

    public string Name => "daemoneye-agent";

    public IReadOnlyCollection<string> ConnectedCollectors => router.CollectorIds;

    public RpcStatistics Statistics => router.Statistics;

    public CollectorPresence? FindCollector(string collectorId) => router.Find(collectorId);

    public async Task<RpcResponse> CallAsync(string collectorId, RpcOperation operation, ByteString? payload = null, TimeSpan? timeout = null, CorrelationMetadata? parent = null, CancellationToken cancellationToken = default)
    {
        var request = new RpcRequest
        {
            Correlation = Correlation.ChildOf(_tracking ? parent : null),
            TimestampUnixNanos = RpcRouter.ToUnixNanos(time.GetUtcNow()),
            TimeoutMs = timeout is { } t ? (uint)Math.Max(1, t.TotalMilliseconds) : 0,
            Operation = operation,
            Target = RpcRouter.TargetPrefix + collectorId,
            Payload = payload ?? ByteString.Empty,
        };
        var waiter = new TaskCompletionSource<RpcResponse>(TaskCreationOptions.RunContinuationsAsynchronously);
        _waiting[request.Correlation.CorrelationId] = waiter;
        try
        {
            router.HandleRequest(this, request);
            return await waiter.Task.WaitAsync(cancellationToken);
        }
        finally
        {
            _waiting.TryRemove(request.Correlation.CorrelationId, out _);
        }
    }

    public void DeliverRequest(RpcRequest request)
    {
        // The agent is never registered as a collector, so the router never sends it requests.
    }

    public void DeliverResponse(RpcResponse response)
    {
        if (_waiting.TryRemove(response.Correlation?.CorrelationId ?? string.Empty, out var waiter))
        {
            waiter.TrySetResult(response);
        }
    }
}

/// <summary>Correlation metadata rules of the product document.</summary>
public static class Correlation
{
    /// <summary>A new id: 32 lower-case hex characters.</summary>
    public static string NewId() => Guid.NewGuid().ToString("N");

    /// <summary>
    /// Metadata for a message caused by <paramref name="parent"/>: a new id, parent = the parent's
    /// id, the same root, the next sequence number. Without a parent, the start of a new chain.
    /// </summary>
    public static CorrelationMetadata ChildOf(CorrelationMetadata? parent)
    {
        var id = NewId();
        if (parent is null || parent.CorrelationId.Length == 0)
        {
            return new CorrelationMetadata { CorrelationId = id, RootCorrelationId = id, SequenceNumber = 1 };
        }

        var child = new CorrelationMetadata
        {
            CorrelationId = id,
            ParentCorrelationId = parent.CorrelationId,
            RootCorrelationId = parent.RootCorrelationId.Length > 0 ? parent.RootCorrelationId : parent.CorrelationId,
            SequenceNumber = parent.SequenceNumber + 1,
            WorkflowStage = parent.WorkflowStage,
        };
        child.Tags.Add(parent.Tags);
        return child;
    }
}
