using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;
using DaemonEye.Protocol.V1;

namespace DaemonEye.Client.Internal;

/// <summary>
/// The control requests in flight (Subscribe, Unsubscribe, Ping), by <c>request_id</c>: the
/// reader completes each with its reply (SubscribeAck, UnsubscribeAck, Pong) or Error. Ids come
/// from one increasing counter per client and are never 0. RPC calls, matched by correlation id,
/// are in <c>BusClient.Rpc.cs</c>.
/// </summary>
internal sealed class RequestManager
{
    private readonly ConcurrentDictionary<uint, PendingRequest> _requests = new();
    private int _nextRequestId;

    /// <summary>A fresh id and its pending reply on <paramref name="connection"/>; failed at once when the connection has already closed.</summary>
    public (uint Id, PendingRequest Pending) Register(Connection connection, BusSubscription? subscription = null)
    {
        uint id;
        do
        {
            id = (uint)Interlocked.Increment(ref _nextRequestId);
        }
        while (id == 0);

        var pending = new PendingRequest(connection, subscription);
        _requests[id] = pending;
        if (connection.Closed.IsCompleted)
        {
            _requests.TryRemove(id, out _);
            pending.Fail(new BusConnectionException("the connection to the agent was lost"));
        }

        return (id, pending);
    }

    /// <summary>Takes the request a reply answers.</summary>
    public bool TryTake(uint id, [NotNullWhen(true)] out PendingRequest? pending) => _requests.TryRemove(id, out pending);

    /// <summary>Forgets a request nobody waits for any more (cancelled).</summary>
    public void Forget(uint id) => _requests.TryRemove(id, out _);

    /// <summary>Fails the requests made on <paramref name="connection"/>, or on any connection when it is null.</summary>
    public void Fail(Connection? connection, Exception error)
    {
        foreach (var (id, pending) in _requests)
        {
            if ((connection is null || pending.Connection == connection) && _requests.TryRemove(id, out _))
            {
                pending.Fail(error);
            }
        }
    }
}

/// <summary>A request waiting for its reply (SubscribeAck, UnsubscribeAck, Pong) or Error.</summary>
internal sealed class PendingRequest(Connection connection, BusSubscription? subscription = null)
{
    private readonly TaskCompletionSource<Envelope> _reply = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public Connection Connection { get; } = connection;

    /// <summary>For Subscribe: the local subscription the ack binds.</summary>
    public BusSubscription? Subscription { get; } = subscription;

    public Task<Envelope> Reply => _reply.Task;

    public void Complete(Envelope reply) => _reply.TrySetResult(reply);

    public void Fail(Exception error) => _reply.TrySetException(error);
}
