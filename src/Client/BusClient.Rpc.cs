using System.Collections.Concurrent;
using System.Threading.Channels;
using DaemonEye.Client.Internal;
using DaemonEye.Protocol.V1;
using DaemonEye.Topics;
using Google.Protobuf;
using Microsoft.Extensions.Logging;

namespace DaemonEye.Client;

/// <summary>RPC over the bus: the caller side (<see cref="CallAsync"/>) and the callee side
/// (<see cref="RpcRequests"/>, <see cref="RespondAsync"/>) used by collectors.</summary>
public sealed partial class BusClient
{
    /// <summary>Prefix of every RPC target: <c>control.collector.&lt;collector id&gt;</c>.</summary>
    public const string RpcTargetPrefix = WellKnownTopics.CollectorPrefix;

    private readonly ConcurrentDictionary<string, PendingCall> _calls = new(StringComparer.Ordinal);
    private readonly Channel<RpcRequest> _incomingRequests = Channel.CreateUnbounded<RpcRequest>(new UnboundedChannelOptions { SingleWriter = true });
    private long _lateResponses;

    /// <summary>The caller's own deadline runs this much after the call's: the agent's Timeout answer
    /// (which names the collector) normally arrives first; the caller's is the backstop.</summary>
    public static readonly TimeSpan RpcDeadlineGrace = TimeSpan.FromMilliseconds(100);

    /// <summary>An RPC response arrived for no pending call and was dropped (see <see cref="LateRpcResponses"/>).
    /// Raised on the reader; keep handlers short.</summary>
    public event EventHandler<RpcResponse>? RpcResponseDropped;

    /// <summary>RPC responses that arrived for no pending call (after a caller-side timeout or cancellation) and were dropped.</summary>
    public long LateRpcResponses => Interlocked.Read(ref _lateResponses);

    /// <summary>
    /// Set by the collector host: serves a request on the reader's thread and returns true, or returns
    /// false to queue it on <see cref="RpcRequests"/>. Only for answers that are quick and never wait
    /// (the host's own HealthCheck and GetCapabilities): the reader reads nothing else meanwhile.
    /// </summary>
    internal Func<RpcRequest, bool>? InlineRpcHandler { get; set; }

    /// <summary>True on the reader's thread while it handles a frame (where <see cref="BusClientOptions.CompleteCallsOnReader"/> runs the code after a call).</summary>
    internal bool OnReaderThread => _writer.IsCorkedOnCurrentThread;

    /// <summary>Calls made with <see cref="CallAsync"/> still waiting for their answer.</summary>
    public int PendingCalls => _calls.Count;

    /// <summary>
    /// RPC requests the agent forwarded to this client (a ROLE_COLLECTOR connection). Answer each
    /// with <see cref="RespondAsync"/>, returning the request's correlation unchanged. The reader
    /// completes when the client is disposed.
    /// </summary>
    public ChannelReader<RpcRequest> RpcRequests => _incomingRequests.Reader;

    /// <summary>
    /// Calls <paramref name="operation"/> on collector <paramref name="collectorId"/> through the agent
    /// and returns its answer. Never throws for an RPC failure: the response then has status
    /// <see cref="RpcStatus.Error"/> and an <see cref="RpcError"/> — the agent's (NotFound,
    /// InvalidOperation, ResourceExhausted, Timeout, CommunicationError), the collector's
    /// (ExecutionError, InvalidOperation...), or this client's own: Timeout when no answer came by
    /// the deadline plus <see cref="RpcDeadlineGrace"/> (a later answer is dropped and counted in <see cref="LateRpcResponses"/>),
    /// CommunicationError when the connection was lost while the call was pending (every pending
    /// call fails at once; calls are not retried on the next connection).
    /// </summary>
    /// <param name="collectorId">The collector: the target is <c>control.collector.&lt;collectorId&gt;</c>.</param>
    /// <param name="operation">What to ask.</param>
    /// <param name="payload">The operation's payload (see <see cref="RpcOperation"/>), or none.</param>
    /// <param name="timeout">The call's timeout; it travels as an absolute deadline that the agent
    /// and the collector honour. Null: <see cref="BusClientOptions.DefaultRpcTimeout"/>, or when that
    /// is null the agent's <c>rpc.default_timeout_seconds</c> (this client then waits for the agent's
    /// own Timeout answer).</param>
    /// <param name="parent">The correlation of the message or call that causes this one: the request
    /// gets a fresh id, parent = <c>parent.correlation_id</c>, the parent's root, and the parent's
    /// sequence number + 1 (tags and workflow stage are carried over). Null: the call starts a new
    /// chain (root = its own id, sequence 1).</param>
    /// <param name="cancellationToken">Abandons the call (its answer, if any, is dropped).</param>
    /// <exception cref="ArgumentException">The collector id cannot form a valid target, or the timeout is not positive.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled; the call is forgotten (its answer is dropped).</exception>
    public async Task<RpcResponse> CallAsync(
        string collectorId,
        RpcOperation operation,
        ByteString? payload = null,
        TimeSpan? timeout = null,
        CorrelationMetadata? parent = null,
        CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var target = RpcTarget(collectorId);
        var chosen = timeout ?? _options.DefaultRpcTimeout;
        if (chosen is { } t && (t <= TimeSpan.Zero || t.TotalMilliseconds > uint.MaxValue))
        {
            throw new ArgumentOutOfRangeException(nameof(timeout), t, "an RPC timeout must be positive and at most 49 days");
        }

        var now = _time.GetUtcNow();
        var request = new RpcRequest
        {
            Correlation = ChildCorrelation(parent),
            TimestampUnixNanos = UnixTime.ToNanos(now),
            DeadlineUnixNanos = chosen is { } d ? UnixTime.ToNanos(now + d) : 0,
            TimeoutMs = chosen is { } ms ? (uint)Math.Ceiling(ms.TotalMilliseconds) : 0,
            Operation = operation,
            Target = target,
            Payload = payload ?? ByteString.Empty,
        };

        if (Volatile.Read(ref _fault) is { } fault)
        {
            return Failure(request, RpcErrorKind.CommunicationError, $"not connected to the agent at {SocketPath}: {fault.Message}");
        }

        // Wait for a connection (the client may be reconnecting), but not past the deadline. Connected
        // (the usual case): no wait, and no linked token source and timer made for it.
        Connection connection;
        if (Volatile.Read(ref _connection) is { Closed.IsCompleted: false } current)
        {
            cancellationToken.ThrowIfCancellationRequested();
            connection = current;
        }
        else
        {
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            if (chosen is { } limit)
            {
                wait.CancelAfter(limit);
            }

            try
            {
                connection = await WaitConnectedAsync(wait.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                return Failure(request, RpcErrorKind.Timeout, $"not connected to the agent at {SocketPath} within the call's timeout ({chosen!.Value.TotalSeconds:0.###} s)");
            }
            catch (ObjectDisposedException)
            {
                throw;
            }
            catch (BusException e)
            {
                return Failure(request, RpcErrorKind.CommunicationError, $"not connected to the agent at {SocketPath}: {e.Message}");
            }
        }

        var call = new PendingCall(request, connection, _options.CompleteCallsOnReader);
        var id = request.Correlation.CorrelationId;
        // Alone: send on this thread (the latency path). With other calls in flight, the writer's
        // batching is worth more than the hand-off it costs. On the reader (a call made by code that
        // CompleteCallsOnReader resumed there), the frame joins the read's cork and leaves with the others.
        var direct = _calls.IsEmpty || OnReaderThread;
        _calls[id] = call;
        if (connection.Closed.IsCompleted)
        {
            _calls.TryRemove(new KeyValuePair<string, PendingCall>(id, call));
            return Failure(request, RpcErrorKind.CommunicationError, $"the connection to the agent at {SocketPath} was lost before the call was sent");
        }

        if (chosen is { } deadline)
        {
            call.Timer = _time.CreateTimer(static state =>
            {
                var (client, pending) = ((BusClient, PendingCall))state!;
                client.TimeOut(pending);
            }, (this, call), deadline + RpcDeadlineGrace, Timeout.InfiniteTimeSpan);
        }

        _writer.Write(new Envelope { RpcRequest = request }, direct ? SendMode.Direct : SendMode.Queue);
        Log.RpcSent(_logger, id, operation, collectorId);
        if (!cancellationToken.CanBeCanceled)
        {
            return await call.Task.ConfigureAwait(false);
        }

        using var registration = cancellationToken.UnsafeRegister(static state =>
        {
            var (client, pending) = ((BusClient, PendingCall))state!;
            if (client._calls.TryRemove(new KeyValuePair<string, PendingCall>(pending.Request.Correlation.CorrelationId, pending)))
            {
                pending.Cancel();
            }
        }, (this, call));
        try
        {
            return await call.Task.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            throw new OperationCanceledException(cancellationToken);
        }
    }

    /// <summary>Sends a collector's answer to an RPC request (the agent routes it to the caller alone).</summary>
    /// <remarks>The response must carry the request's correlation unchanged. An answer for a call the
    /// agent has already completed (timed out) is discarded and counted by the agent.</remarks>
    public ValueTask RespondAsync(RpcResponse response, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(response);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled(cancellationToken);
        }

        _writer.Write(new Envelope { RpcResponse = response }, SendMode.Direct);
        return ValueTask.CompletedTask;
    }

    /// <summary>An error response for <paramref name="request"/>, its correlation unchanged.</summary>
    public static RpcResponse Failure(RpcRequest request, RpcErrorKind kind, string message)
    {
        ArgumentNullException.ThrowIfNull(request);
        return new RpcResponse
        {
            Correlation = request.Correlation ?? new CorrelationMetadata(),
            Status = RpcStatus.Error,
            Error = new RpcError { Kind = kind, Message = message },
        };
    }

    /// <summary>The RPC target topic of a collector, validated.</summary>
    /// <exception cref="ArgumentException">The id is empty or cannot be a topic segment.</exception>
    public static string RpcTarget(string collectorId)
    {
        ArgumentException.ThrowIfNullOrEmpty(collectorId);
        var target = RpcTargetPrefix + collectorId;
        var validation = TopicRules.ValidateTopic(target);
        if (!validation.IsValid || collectorId.Contains('.', StringComparison.Ordinal))
        {
            throw new ArgumentException($"collector id '{collectorId}' cannot be an RPC target: ids are one topic segment of 1-64 characters from [a-z0-9_-]", nameof(collectorId));
        }

        return target;
    }

    private CorrelationMetadata ChildCorrelation(CorrelationMetadata? parent)
    {
        Span<byte> buffer = stackalloc byte[32];
        int length;
        lock (_writer.Gate)
        {
            length = FormatCorrelationId(buffer, _idPrefix, ++_idCounter);
        }

        var id = System.Text.Encoding.ASCII.GetString(buffer[..length]);
        if (parent is null || string.IsNullOrEmpty(parent.CorrelationId))
        {
            return new CorrelationMetadata { CorrelationId = id, RootCorrelationId = id, SequenceNumber = 1 };
        }

        var child = new CorrelationMetadata
        {
            CorrelationId = id,
            ParentCorrelationId = parent.CorrelationId,
            RootCorrelationId = string.IsNullOrEmpty(parent.RootCorrelationId) ? parent.CorrelationId : parent.RootCorrelationId,
            SequenceNumber = parent.SequenceNumber + 1,
            WorkflowStage = parent.WorkflowStage,
        };
        child.Tags.Add(parent.Tags);
        return child;
    }

    private void TimeOut(PendingCall call)
    {
        var id = call.Request.Correlation.CorrelationId;
        if (_calls.TryRemove(new KeyValuePair<string, PendingCall>(id, call)))
        {
            var timeout = TimeSpan.FromMilliseconds(call.Request.TimeoutMs);
            Log.RpcTimedOut(_logger, id, call.Request.Operation, call.Request.Target, timeout.TotalSeconds);
            call.Complete(Failure(call.Request, RpcErrorKind.Timeout,
                $"no answer from '{call.Request.Target}' to {call.Request.Operation} within {timeout.TotalSeconds:0.###} s"));
        }
    }

    /// <summary>On the reader: an RPC response for one of our calls, or a request for us as a collector.</summary>
    private void HandleRpc(Envelope envelope)
    {
        if (envelope.BodyCase == Envelope.BodyOneofCase.RpcRequest)
        {
            if (InlineRpcHandler?.Invoke(envelope.RpcRequest) != true)
            {
                _incomingRequests.Writer.TryWrite(envelope.RpcRequest);
            }

            return;
        }

        var response = envelope.RpcResponse;
        var id = response.Correlation?.CorrelationId ?? string.Empty;
        if (_calls.TryRemove(id, out var call))
        {
            call.Complete(response);
        }
        else
        {
            Interlocked.Increment(ref _lateResponses);
            Log.RpcLateResponse(_logger, id);
            Raise(RpcResponseDropped, response);
        }
    }

    /// <summary>The connection is gone: every call pending on it completes now with CommunicationError.</summary>
    private void FailCalls(Connection? connection, string reason)
    {
        foreach (var (id, call) in _calls)
        {
            if ((connection is null || call.Connection == connection) && _calls.TryRemove(new KeyValuePair<string, PendingCall>(id, call)))
            {
                call.Complete(Failure(call.Request, RpcErrorKind.CommunicationError, reason));
            }
        }
    }

    private sealed class PendingCall(RpcRequest request, Connection connection, bool completeInline)
    {
        private readonly TaskCompletionSource<RpcResponse> _completion = new(completeInline ? TaskCreationOptions.None : TaskCreationOptions.RunContinuationsAsynchronously);

        public RpcRequest Request { get; } = request;

        public Connection Connection { get; } = connection;

        public ITimer? Timer { get; set; }

        public Task<RpcResponse> Task => _completion.Task;

        public void Complete(RpcResponse response)
        {
            Timer?.Dispose();
            _completion.TrySetResult(response);
        }

        public void Cancel()
        {
            Timer?.Dispose();
            _completion.TrySetCanceled();
        }
    }

    private static partial class Log
    {
        [LoggerMessage(20, LogLevel.Trace, "RPC {CorrelationId} {Operation} -> {CollectorId} sent")]
        public static partial void RpcSent(ILogger logger, string correlationId, RpcOperation operation, string collectorId);

        [LoggerMessage(21, LogLevel.Warning, "RPC {CorrelationId} {Operation} -> {Target} timed out after {TimeoutSeconds} s")]
        public static partial void RpcTimedOut(ILogger logger, string correlationId, RpcOperation operation, string target, double timeoutSeconds);

        [LoggerMessage(22, LogLevel.Debug, "RPC response {CorrelationId} dropped: no call pending with that id (answered late or cancelled)")]
        public static partial void RpcLateResponse(ILogger logger, string correlationId);
    }
}
