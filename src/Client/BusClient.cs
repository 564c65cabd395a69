using DaemonEye.Client.Internal;
using DaemonEye.Protocol;
using DaemonEye.Protocol.V1;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace DaemonEye.Client;

/// <summary>
/// A connection to the daemoneye-agent event bus: publish, subscribe, flush, RPC. Every frame goes
/// through one <see cref="CommandWriter"/> (many frames per socket send; when its buffer is full
/// PublishAsync waits: backpressure, never silent loss). The client reconnects on its own,
/// redoing the handshake and restoring every live subscription.
/// </summary>
/// <remarks>
/// Thread-safe. Dispose to flush what is buffered and close the connection. The type is split by
/// concern: <c>BusClient.Connection.cs</c> (handshake, reconnects, the connection's loops),
/// <c>BusClient.Publish.cs</c> (publish and flush), <c>BusClient.Subscribe.cs</c>,
/// <c>BusClient.Reader.cs</c> (the read loop and what each incoming frame does),
/// <c>BusClient.Rpc.cs</c> (calls and answers); the sender, the request table and the
/// subscription list are types of their own in <c>Internal/</c>.
/// </remarks>
public sealed partial class BusClient : IAsyncDisposable
{
    /// <summary>Frames the client accepts from the agent: the largest configurable frame plus room for Deliver's own fields.</summary>
    private const int MaxIncomingFrameSize = Framing.MaxConfigurableFrameSize + 1024;

    private readonly BusClientOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _disposeCts = new();
    private readonly CommandWriter _writer;
    private readonly RequestManager _requests = new();
    private readonly SubscriptionManager _subscriptions = new();

    // Connection state, guarded by _stateGate.
    private readonly Lock _stateGate = new();
    private Connection? _connection;
    private TaskCompletionSource<Connection> _connected = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task _supervisor = Task.CompletedTask;
    private int _disposed;

    private long _droppedTotal;
    private long _lostFrames;
    private long _abandonedTotal;
    private Exception? _fault;

    private BusClient(BusClientOptions options, string socketPath)
    {
        _options = options;
        SocketPath = socketPath;
        _time = options.TimeProvider;
        _logger = (ILogger?)options.LoggerFactory?.CreateLogger<BusClient>() ?? NullLogger.Instance;
        _writer = new CommandWriter(options.MaxPendingBytes, options.TimeProvider);
    }

    /// <summary>The agent dropped messages for this connection. Raised on the reader; keep handlers short.</summary>
    public event EventHandler<BusDroppedEventArgs>? Dropped;

    /// <summary>The agent reported an error no request was waiting for (e.g. INVALID_TOPIC for a publish).</summary>
    public event EventHandler<BusErrorEventArgs>? ErrorReceived;

    /// <summary>
    /// A buffered subscription is full and the reader waits for the application to take a message
    /// (the slow consumer, once per stall). Raised on the reader; keep handlers short and do not read
    /// the subscription from the handler.
    /// </summary>
    public event EventHandler<BusSlowConsumerEventArgs>? SlowConsumer;

    public event EventHandler<BusDisconnectedEventArgs>? Disconnected;

    public event EventHandler<BusReconnectedEventArgs>? Reconnected;

    /// <summary>The socket this client connects to.</summary>
    public string SocketPath { get; }

    /// <summary>The agent's id of the current connection; null while disconnected.</summary>
    public string? ConnectionId => Volatile.Read(ref _connection)?.Welcome.ConnectionId;

    public bool IsConnected => Volatile.Read(ref _connection) is not null;

    /// <summary>The role the agent granted the current connection (Welcome.role): what it may do. A
    /// client of another user than the agent's asking for cli or client may get subscriber. Null while disconnected.</summary>
    public Role? GrantedRole => Volatile.Read(ref _connection)?.Welcome.Role;

    /// <summary>
    /// Capability negotiation, the agent's answer (Welcome.granted): what the current connection was
    /// granted, each "kind:value" (role, publish and subscribe patterns, rpc, and a collector's task
    /// types and capacity). Empty while disconnected.
    /// </summary>
    public IReadOnlyList<string> GrantedCapabilities => Volatile.Read(ref _connection)?.Welcome.Granted ?? (IReadOnlyList<string>)[];

    /// <summary>What the agent refused of what this client asked for in Hello, each with the reason (Welcome.refused).</summary>
    public IReadOnlyList<CapabilityRefusal> RefusedCapabilities => Volatile.Read(ref _connection)?.Welcome.Refused ?? (IReadOnlyList<CapabilityRefusal>)[];

    /// <summary>Messages the agent dropped for this client, over all its connections.</summary>
    public long DroppedTotal => Interlocked.Read(ref _droppedTotal);

    /// <summary>Frames that were being written when a connection failed and may not have reached the agent.</summary>
    public long LostFrames => Interlocked.Read(ref _lostFrames);

    /// <summary>
    /// Deliveries the client dropped, over all its connections: when a connection ends (e.g. the agent
    /// is killed) while the reader waits on a full subscription buffer, the reader stops waiting, and
    /// what the agent had sent that full buffers cannot take is abandoned and counted here, per
    /// subscription (<see cref="BusSubscription.Abandoned"/>) and per connection
    /// (<see cref="BusDisconnectedEventArgs.AbandonedMessages"/>). Also the unread messages a durable
    /// subscription's buffer still holds when a reconnect restores it (counted per subscription, not per
    /// connection), which the agent delivers again.
    /// </summary>
    public long AbandonedMessages => Interlocked.Read(ref _abandonedTotal);

    /// <summary>The sender (for tests: how frames left).</summary>
    internal CommandWriter Writer => _writer;

    /// <summary>Connects to the agent and completes the handshake.</summary>
    /// <exception cref="BusConnectionException">The agent's socket is missing, refuses, or the connection failed.</exception>
    /// <exception cref="BusException">The agent refused the handshake.</exception>
    public static async Task<BusClient> ConnectAsync(BusClientOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.EnsureValid();
        var client = new BusClient(options, options.ResolveSocketPath());
        var connection = await client.OpenAsync(cancellationToken).ConfigureAwait(false);
        await client.ActivateAsync(connection, restore: false, cancellationToken).ConfigureAwait(false);
        client._supervisor = client.SuperviseAsync(connection);
        return client;
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        // Readers can still drain what was delivered; nothing new is buffered, so the socket
        // reader never waits on a full subscription while we flush.
        foreach (var subscription in _subscriptions.TakeAll())
        {
            subscription.TryClose();
        }

        var connection = Volatile.Read(ref _connection);
        if (connection is not null && _options.DisposeTimeout > TimeSpan.Zero)
        {
            using var timeout = new CancellationTokenSource(_options.DisposeTimeout, _time);
            try
            {
                await FlushCoreAsync(timeout.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or BusException)
            {
                Log.DisposeFlushFailed(_logger, e);
            }
        }

        await _disposeCts.CancelAsync().ConfigureAwait(false);
        Volatile.Read(ref _connection)?.Close(null);
        try
        {
            await _supervisor.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        lock (_stateGate)
        {
            _connected.TrySetException(new ObjectDisposedException(nameof(BusClient)));
            _connected.Task.Exception?.Handle(_ => true);
        }

        _writer.ReleaseWaiters();
        _requests.Fail(null, new ObjectDisposedException(nameof(BusClient)));
        FailCalls(null, "the bus client was disposed while the call was pending");
        _incomingRequests.Writer.TryComplete();

        _disposeCts.Dispose();
    }

    private void Raise<T>(EventHandler<T>? handler, T args)
    {
        if (handler is null)
        {
            return;
        }

        try
        {
            handler(this, args);
        }
        catch (Exception e)
        {
            Log.HandlerFailed(_logger, e);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Connected to the agent at {SocketPath} as connection {ConnectionId}")]
        public static partial void Connected(ILogger logger, string socketPath, string connectionId);

        [LoggerMessage(2, LogLevel.Warning, "Lost the connection to the agent at {SocketPath}")]
        public static partial void Disconnected(ILogger logger, string socketPath, Exception? reason);

        [LoggerMessage(3, LogLevel.Information, "Reconnected to the agent at {SocketPath} as connection {ConnectionId} after {Attempts} attempt(s); restored {Restored} subscription(s)")]
        public static partial void Reconnected(ILogger logger, string socketPath, string connectionId, int attempts, int restored);

        [LoggerMessage(4, LogLevel.Debug, "Reconnect attempt {Attempt} to {SocketPath} failed: {Reason}")]
        public static partial void ReconnectFailed(ILogger logger, string socketPath, int attempt, string reason);

        [LoggerMessage(5, LogLevel.Warning, "The agent refused to restore the subscription to '{Pattern}': {Code}: {Reason}")]
        public static partial void RestoreRefused(ILogger logger, string pattern, ErrorCode code, string reason);

        [LoggerMessage(6, LogLevel.Warning, "The agent reported {Code}: {Reason} (fatal: {Fatal})")]
        public static partial void AgentError(ILogger logger, ErrorCode code, string reason, bool fatal);

        [LoggerMessage(7, LogLevel.Warning, "The agent dropped {Count} message(s) for this connection ({Total} in all): {Reason}")]
        public static partial void MessagesDropped(ILogger logger, ulong count, ulong total, string reason);

        [LoggerMessage(8, LogLevel.Debug, "Ignored an unexpected {Body} frame from the agent")]
        public static partial void UnexpectedFrame(ILogger logger, string body);

        [LoggerMessage(9, LogLevel.Warning, "A BusClient event handler threw")]
        public static partial void HandlerFailed(ILogger logger, Exception error);

        [LoggerMessage(10, LogLevel.Warning, "Could not flush buffered publishes while disposing")]
        public static partial void DisposeFlushFailed(ILogger logger, Exception error);

        [LoggerMessage(12, LogLevel.Warning, "The connection to the agent at {SocketPath} ended while subscription buffers were full: {Count} delivered message(s) abandoned")]
        public static partial void DeliveriesAbandoned(ILogger logger, string socketPath, long count);

        [LoggerMessage(13, LogLevel.Information, "Restoring the durable subscription to '{Pattern}' (consumer {Consumer}): {Count} unacknowledged message(s) left unread in its buffer are discarded; the agent delivers them again")]
        public static partial void BufferedDurableDiscarded(ILogger logger, string pattern, string consumer, int count);

        [LoggerMessage(11, LogLevel.Warning, "The handler of the subscription to '{Pattern}' threw; it is called again for the next message")]
        public static partial void SubscriptionHandlerFailed(ILogger logger, string pattern, Exception error);
    }
}
