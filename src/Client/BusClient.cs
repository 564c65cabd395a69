using System.Buffers;
using System.Collections.Concurrent;
using System.Net.Sockets;
using DaemonEye.Networking;
using System.Security.Cryptography;
using System.Text;
using DaemonEye.Client.Internal;
using DaemonEye.Protocol;
using DaemonEye.Protocol.V1;
using DaemonEye.Protocol.Wire;
using DaemonEye.Topics;
using Google.Protobuf;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace DaemonEye.Client;

/// <summary>
/// A connection to the daemoneye-agent event bus: publish, subscribe, flush. Publishes are encoded
/// into a shared buffer and written by one writer loop, many frames per socket send; when the
/// buffer is full PublishAsync waits (backpressure, never silent loss). The client reconnects on
/// its own, redoing the handshake and restoring every live subscription.
/// </summary>
/// <remarks>Thread-safe. Dispose to flush what is buffered and close the connection.</remarks>
public sealed partial class BusClient : IAsyncDisposable
{
    /// <summary>Frames the client accepts from the agent: the largest configurable frame plus room for Deliver's own fields.</summary>
    private const int MaxIncomingFrameSize = Framing.MaxConfigurableFrameSize + 1024;

    private readonly BusClientOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _disposeCts = new();

    // Write side: everything below is guarded by _writeGate.
    private readonly Lock _writeGate = new();
    private ArrayBufferWriter<byte> _pending = new(64 * 1024);
    private ArrayBufferWriter<byte> _sending = new(64 * 1024);
    private int _pendingFrames;
    private bool _writerWaiting;
    // While the writer is parked, an RPC frame is sent on the caller's thread (see TrySendDirectLocked)
    // to this socket, the parked writer's; a frame the kernel took only part of leaves its rest in
    // _unsent, which the writer sends before anything else (it belongs to that connection only).
    private ReactorSocket? _parkedSocket;
    private ReadOnlyMemory<byte> _unsent;
    private int _unsentFrames;
    // Corking: RPC frames the reader's thread produces (a collector's inline answers) wait in _pending
    // until the reader has processed its whole read, then leave in one send (SendCorked).
    [ThreadStatic]
    private static BusClient? t_corking;
    private bool _corked;
    private TaskCompletionSource? _spaceAvailable;
    private readonly Dictionary<string, TopicStream> _streams = new(StringComparer.Ordinal);
    private readonly ulong _idPrefix = BitConverter.ToUInt64(RandomNumberGenerator.GetBytes(8));
    private ulong _idCounter;
    private int _maxFrameSize = Framing.DefaultMaxFrameSize;
    private readonly SemaphoreSlim _writerSignal = new(0);

    // Requests and subscriptions.
    private readonly ConcurrentDictionary<uint, PendingRequest> _requests = new();
    private int _nextRequestId;
    private readonly Lock _subscriptionsGate = new();
    private readonly List<BusSubscription> _subscriptions = [];

    // Connection state, guarded by _stateGate.
    private readonly Lock _stateGate = new();
    private Connection? _connection;
    private TaskCompletionSource<Connection> _connected = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task _supervisor = Task.CompletedTask;
    private int _disposed;

    // Reader state (one reader runs at a time).
    private readonly List<uint> _deliverIds = [];
    private readonly TopicStringCache _topics = new();

    private long _droppedTotal;
    private long _lostFrames;
    private int _sendingFrames;
    private Exception? _fault;

    private BusClient(BusClientOptions options, string socketPath)
    {
        _options = options;
        SocketPath = socketPath;
        _time = options.TimeProvider;
        _logger = (ILogger?)options.LoggerFactory?.CreateLogger<BusClient>() ?? NullLogger.Instance;
    }

    /// <summary>The agent dropped messages for this connection. Raised on the reader; keep handlers short.</summary>
    public event EventHandler<BusDroppedEventArgs>? Dropped;

    /// <summary>The agent reported an error no request was waiting for (e.g. INVALID_TOPIC for a publish).</summary>
    public event EventHandler<BusErrorEventArgs>? ErrorReceived;

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

    /// <summary>Messages the agent dropped for this client, over all its connections.</summary>
    public long DroppedTotal => Interlocked.Read(ref _droppedTotal);

    /// <summary>Frames that were being written when a connection failed and may not have reached the agent.</summary>
    public long LostFrames => Interlocked.Read(ref _lostFrames);

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

    /// <summary>
    /// Publishes one message. Completes synchronously while the write buffer has room; otherwise
    /// waits until the writer has drained it. Fire-and-forget on the wire: use <see cref="FlushAsync"/>
    /// to know that everything published so far has been routed.
    /// </summary>
    /// <exception cref="TopicFormatException">The topic breaks the topic rules.</exception>
    public ValueTask PublishAsync(string topic, ReadOnlyMemory<byte> payload, PublishOptions? options = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (Volatile.Read(ref _fault) is { } fault)
        {
            return ValueTask.FromException(fault);
        }

        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled(cancellationToken);
        }

        if (options is not null)
        {
            ValidatePublishOptions(options);
        }

        return TryEnqueuePublish(topic, payload.Span, options)
            ? ValueTask.CompletedTask
            : PublishSlowAsync(topic, payload, options, cancellationToken);
    }

    private async ValueTask PublishSlowAsync(string topic, ReadOnlyMemory<byte> payload, PublishOptions? options, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task? wait = null;
            lock (_writeGate)
            {
                // Checked under the writer's lock: if the writer drained the buffer since the failed
                // attempt, retry now; otherwise the writer's next swap completes this wait.
                if (_pending.WrittenCount >= _options.MaxPendingBytes)
                {
                    _spaceAvailable ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    wait = _spaceAvailable.Task;
                }
            }

            if (wait is not null)
            {
                await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
            }

            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            if (Volatile.Read(ref _fault) is { } fault)
            {
                throw fault;
            }
            if (TryEnqueuePublish(topic, payload.Span, options))
            {
                return;
            }
        }
    }

    private bool TryEnqueuePublish(string topic, ReadOnlySpan<byte> payload, PublishOptions? options)
    {
        Span<byte> correlationId = stackalloc byte[ProtocolConstants.MaxCorrelationIdLength * 3];
        var timestamp = options?.Timestamp ?? _time.GetUtcNow();
        var nanos = (ulong)(timestamp.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) * 100;
        lock (_writeGate)
        {
            if (_pending.WrittenCount >= _options.MaxPendingBytes)
            {
                return false;
            }

            ref var stream = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrNullRef(_streams, topic);
            if (System.Runtime.CompilerServices.Unsafe.IsNullRef(ref stream))
            {
                TopicRules.EnsureTopic(topic);
                _streams[topic] = new TopicStream(Encoding.UTF8.GetBytes(topic), 0);
                stream = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrNullRef(_streams, topic);
            }

            var sequence = options is { SequenceNumber: > 0 } ? options.SequenceNumber : ++stream.Sequence;
            int idLength;
            bool rootIsSelf;
            if (options?.CorrelationId is { Length: > 0 } given)
            {
                idLength = Encoding.UTF8.GetBytes(given, correlationId);
                rootIsSelf = options.RootCorrelationId is null && string.IsNullOrEmpty(options.ParentCorrelationId);
            }
            else
            {
                idLength = FormatCorrelationId(correlationId, _idPrefix, ++_idCounter);
                rootIsSelf = options?.RootCorrelationId is null && string.IsNullOrEmpty(options?.ParentCorrelationId);
            }

            var fields = new PublishFields
            {
                Topic = stream.Utf8,
                Payload = payload,
                CorrelationId = correlationId[..idLength],
                ParentCorrelationId = options?.ParentCorrelationId,
                RootCorrelationId = options?.RootCorrelationId,
                RootIsCorrelationId = rootIsSelf,
                SequenceNumber = sequence,
                WorkflowStage = options?.WorkflowStage,
                Tags = options?.Tags,
                TimestampUnixNanos = nanos,
                ContentType = options?.ContentType,
            };
            var frameSize = PublishFrame.FrameSize(fields, out var correlationSize, out var publishSize, out var envelopeSize);
            if (frameSize - Framing.HeaderSize > _maxFrameSize)
            {
                if (options is not { SequenceNumber: > 0 })
                {
                    stream.Sequence--;
                }

                throw new ArgumentException($"the message on '{topic}' encodes to {frameSize - Framing.HeaderSize} bytes; the agent accepts frames of at most {_maxFrameSize} bytes", nameof(payload));
            }

            var span = _pending.GetSpan(frameSize);
            PublishFrame.Write(span, fields, correlationSize, publishSize, envelopeSize);
            _pending.Advance(frameSize);
            _pendingFrames++;
            WakeWriterLocked();
        }

        return true;
    }

    /// <summary>Formats a 32-character lowercase hex id: a per-client random prefix and a counter.</summary>
    internal static int FormatCorrelationId(Span<byte> destination, ulong prefix, ulong counter)
    {
        prefix.TryFormat(destination, out var a, "x16", null);
        counter.TryFormat(destination[a..], out var b, "x16", null);
        return a + b;
    }

    private static void ValidatePublishOptions(PublishOptions options)
    {
        Check(options.CorrelationId, nameof(options.CorrelationId));
        Check(options.ParentCorrelationId, nameof(options.ParentCorrelationId));
        Check(options.RootCorrelationId, nameof(options.RootCorrelationId));

        static void Check(string? id, string name)
        {
            if (id is not null && id.Length > ProtocolConstants.MaxCorrelationIdLength)
            {
                throw new ArgumentException($"{name} is {id.Length} characters long; at most {ProtocolConstants.MaxCorrelationIdLength} are allowed", name);
            }
        }
    }

    /// <summary>
    /// Subscribes to a pattern. Returns once the agent has acknowledged: every message published
    /// after that is delivered to the subscription.
    /// </summary>
    /// <exception cref="TopicFormatException">The pattern breaks the topic rules.</exception>
    /// <exception cref="BusException">The agent refused (e.g. LIMIT_EXCEEDED).</exception>
    public async Task<BusSubscription> SubscribeAsync(string pattern, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        TopicRules.EnsurePattern(pattern);
        var subscription = new BusSubscription(this, pattern, _options.SubscriptionBufferSize);
        while (true)
        {
            var connection = await WaitConnectedAsync(cancellationToken).ConfigureAwait(false);
            var (id, pending) = Register(connection, subscription);
            EnqueueControl(new Envelope { RequestId = id, Subscribe = new Subscribe { Pattern = pattern } });
            try
            {
                await pending.Reply.WaitAsync(cancellationToken).ConfigureAwait(false);
                return subscription;
            }
            catch (BusConnectionException)
            {
                // The connection went away before the ack; subscribe again on the next one.
            }
            catch (OperationCanceledException)
            {
                _requests.TryRemove(id, out _);
                if (pending.Reply.IsCompletedSuccessfully)
                {
                    await UnsubscribeAsync(subscription, CancellationToken.None).ConfigureAwait(false);
                }

                throw;
            }
        }
    }

    /// <summary>Ends a subscription: its reader completes, and after the agent's ack nothing more is delivered.</summary>
    public async ValueTask UnsubscribeAsync(BusSubscription subscription, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(subscription);
        if (!subscription.TryClose())
        {
            return;
        }

        lock (_subscriptionsGate)
        {
            _subscriptions.Remove(subscription);
        }

        var connection = Volatile.Read(ref _connection);
        if (connection is null || subscription.Connection != connection || !connection.Subscriptions.TryRemove(subscription.Id, out _))
        {
            return;
        }

        var (id, pending) = Register(connection);
        EnqueueControl(new Envelope { RequestId = id, Unsubscribe = new Unsubscribe { SubscriptionId = subscription.Id } });
        try
        {
            await pending.Reply.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (BusConnectionException)
        {
            // The connection is gone, and with it the agent's subscription.
        }
        catch (BusException e) when (e.Code == ErrorCode.UnknownSubscription)
        {
        }
    }

    /// <summary>
    /// A barrier: returns once the agent has routed every frame this client sent before the call
    /// (delivered to subscriber buffers or dropped and counted). Sends a Ping and awaits its Pong.
    /// </summary>
    /// <exception cref="BusConnectionException">The connection was lost before the Pong; earlier publishes may be lost.</exception>
    public async Task FlushAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        await FlushCoreAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task FlushCoreAsync(CancellationToken cancellationToken)
    {
        var connection = await WaitConnectedAsync(cancellationToken).ConfigureAwait(false);
        var (id, pending) = Register(connection);
        EnqueueControl(new Envelope { RequestId = id, Ping = new Ping { Nonce = id } });
        try
        {
            await pending.Reply.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            _requests.TryRemove(id, out _);
            throw;
        }
    }

    private (uint Id, PendingRequest Pending) Register(Connection connection, BusSubscription? subscription = null)
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

    /// <param name="envelope">The frame to send.</param>
    /// <param name="direct">An RPC frame: when the writer is parked, send it on this thread, which
    /// saves waking the writer (a thread hand-off on each side of every call).</param>
    private void EnqueueControl(Envelope envelope, bool direct = false)
    {
        lock (_writeGate)
        {
            Framing.Write(_pending, envelope);
            _pendingFrames++;
            if (direct)
            {
                if (t_corking == this)
                {
                    _corked = true;
                    return;
                }

                if (TrySendDirectLocked())
                {
                    return;
                }
            }

            WakeWriterLocked();
        }
    }

    /// <summary>On the reader, after a read's frames: sends the RPC frames they produced.</summary>
    private void SendCorked()
    {
        lock (_writeGate)
        {
            if (!_corked)
            {
                return;
            }

            _corked = false;
            if (!TrySendDirectLocked())
            {
                WakeWriterLocked();
            }
        }
    }

    /// <summary>
    /// With the writer parked (so <c>_pending</c> holds only RPC frames added since: a publish would
    /// have woken it), sends them on the parked writer's socket, without ever waiting on the agent.
    /// False when the writer must send them (or their unsent rest) instead.
    /// </summary>
    private bool TrySendDirectLocked()
    {
        if (!_writerWaiting || _parkedSocket is not { } socket || _pendingFrames == 0)
        {
            return false;
        }

        var data = _pending.WrittenSpan;
        // 0: the socket buffer is full; -1: the socket failed, which the writer will meet and report.
        var sent = socket.TrySend(data);
        if (sent <= 0)
        {
            return false;
        }

        if (sent < data.Length)
        {
            // Part of a frame: its rest must follow on this same connection, before anything else.
            _unsent = data[sent..].ToArray();
            _unsentFrames = _pendingFrames;
            _pending.ResetWrittenCount();
            _pendingFrames = 0;
            return false;
        }

        _pending.ResetWrittenCount();
        _pendingFrames = 0;
        return true;
    }

    private void WakeWriterLocked()
    {
        if (_writerWaiting)
        {
            _writerWaiting = false;
            _parkedSocket = null;
            _writerSignal.Release();
        }
    }

    private Task<Connection> WaitConnectedAsync(CancellationToken cancellationToken)
    {
        lock (_stateGate)
        {
            return _connected.Task.WaitAsync(cancellationToken);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        List<BusSubscription> subscriptions;
        lock (_subscriptionsGate)
        {
            subscriptions = [.. _subscriptions];
            _subscriptions.Clear();
        }

        // Readers can still drain what was delivered; nothing new is buffered, so the socket
        // reader never waits on a full subscription while we flush.
        foreach (var subscription in subscriptions)
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

        lock (_writeGate)
        {
            _spaceAvailable?.TrySetResult();
            _spaceAvailable = null;
        }

        foreach (var (id, pending) in _requests)
        {
            _requests.TryRemove(id, out _);
            pending.Fail(new ObjectDisposedException(nameof(BusClient)));
        }

        FailCalls(null, "the bus client was disposed while the call was pending");
        _incomingRequests.Writer.TryComplete();

        _disposeCts.Dispose();
    }

    // ----- connection lifecycle -----

    private async Task<Connection> OpenAsync(CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.HandshakeTimeout);
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        IDisposable owner = socket;
        try
        {
            try
            {
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(SocketPath), timeout.Token).ConfigureAwait(false);
            }
            catch (SocketException e)
            {
                throw new BusConnectionException(DescribeConnectFailure(SocketPath, e), e);
            }

            // From here on every read and write goes through the reactor (see SocketReactor).
            var io = new ReactorSocket(socket);
            owner = io;

            var hello = new Envelope
            {
                RequestId = 1,
                Hello = new Hello
                {
                    ProtocolVersion = ProtocolConstants.Version,
                    ClientId = _options.ClientId,
                    Role = _options.Role,
                    ClientVersion = _options.ClientVersion,
                    Capabilities = { _options.Capabilities },
                    RegistrationToken = _options.RegistrationToken ?? string.Empty,
                },
            };
            SocketException? sendFailed = null;
            try
            {
                await io.SendAsync(Framing.ToFrame(hello), timeout.Token).ConfigureAwait(false);
            }
            catch (SocketException e)
            {
                // The agent may have refused the connection on accept (e.g. this user may not use the
                // bus) and closed it: its Error is still there to read, and says why.
                sendFailed = e;
            }

            var reader = new FrameReader(MaxIncomingFrameSize);
            Envelope reply;
            while (true)
            {
                if (reader.TryTake(out var offset, out var length))
                {
                    reply = Envelope.Parser.ParseFrom(reader.Buffer.AsSpan(offset, length));
                    break;
                }

                if (!await reader.FillAsync(io, timeout.Token).ConfigureAwait(false))
                {
                    throw sendFailed is not null
                        ? new BusConnectionException($"the handshake with the agent at {SocketPath} failed: {sendFailed.Message}", sendFailed)
                        : new BusConnectionException($"the agent at {SocketPath} closed the connection during the handshake");
                }
            }

            switch (reply.BodyCase)
            {
                case Envelope.BodyOneofCase.Welcome:
                    return new Connection(io, reader, reply.Welcome);
                case Envelope.BodyOneofCase.Error:
                    throw new BusException(reply.Error.Code, $"the agent refused the handshake: {reply.Error.Code}: {reply.Error.Message}", reply.Error.Fatal);
                default:
                    throw new BusException(ErrorCode.UnexpectedMessage, $"the agent answered Hello with {reply.BodyCase} instead of Welcome", fatal: true);
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            owner.Dispose();
            throw new BusConnectionException($"the agent at {SocketPath} did not complete the handshake within {_options.HandshakeTimeout.TotalSeconds:0.#} s");
        }
        catch (Exception e) when (e is IOException or InvalidDataException or InvalidProtocolBufferException or SocketException)
        {
            owner.Dispose();
            throw new BusConnectionException($"the handshake with the agent at {SocketPath} failed: {e.Message}", e);
        }
        catch
        {
            owner.Dispose();
            throw;
        }
    }

    internal static string DescribeConnectFailure(string path, SocketException e) => AgentSocketDiagnosis.Describe(path, e);

    /// <summary>Starts the reader, restores subscriptions (after a reconnect), then starts the writer and publishes the connection.</summary>
    private async Task<int> ActivateAsync(Connection connection, bool restore, CancellationToken cancellationToken)
    {
        lock (_writeGate)
        {
            _maxFrameSize = connection.Welcome.MaxFrameSize > 0 ? (int)Math.Min(connection.Welcome.MaxFrameSize, (uint)Framing.MaxConfigurableFrameSize) : Framing.DefaultMaxFrameSize;
        }

        connection.ReaderTask = Task.Run(() => ReadLoopAsync(connection), CancellationToken.None);
        var restored = 0;
        if (restore)
        {
            restored = await RestoreSubscriptionsAsync(connection, cancellationToken).ConfigureAwait(false);
        }

        connection.WriterTask = Task.Run(() => WriteLoopAsync(connection), CancellationToken.None);
        lock (_stateGate)
        {
            Volatile.Write(ref _connection, connection);
            _connected.TrySetResult(connection);
        }

        Log.Connected(_logger, SocketPath, connection.Welcome.ConnectionId);
        return restored;
    }

    private async Task<int> RestoreSubscriptionsAsync(Connection connection, CancellationToken cancellationToken)
    {
        List<BusSubscription> subscriptions;
        lock (_subscriptionsGate)
        {
            subscriptions = [.. _subscriptions];
        }

        if (subscriptions.Count == 0)
        {
            return 0;
        }

        // The writer is not running yet: send the Subscribe frames directly, ahead of anything buffered.
        var batch = new ArrayBufferWriter<byte>();
        var waits = new List<(BusSubscription Subscription, PendingRequest Pending)>(subscriptions.Count);
        foreach (var subscription in subscriptions)
        {
            var (id, pending) = Register(connection, subscription);
            Framing.Write(batch, new Envelope { RequestId = id, Subscribe = new Subscribe { Pattern = subscription.Pattern } });
            waits.Add((subscription, pending));
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, connection.Token);
        timeout.CancelAfter(_options.HandshakeTimeout);
        await connection.Io.SendAsync(batch.WrittenMemory, timeout.Token).ConfigureAwait(false);
        var restored = 0;
        foreach (var (subscription, pending) in waits)
        {
            try
            {
                await pending.Reply.WaitAsync(timeout.Token).ConfigureAwait(false);
                restored++;
            }
            catch (BusException e) when (e is not BusConnectionException)
            {
                // The agent refused this one (e.g. LIMIT_EXCEEDED): end it so its reader learns why.
                Log.RestoreRefused(_logger, subscription.Pattern, e.Code, e.Message);
                lock (_subscriptionsGate)
                {
                    _subscriptions.Remove(subscription);
                }

                subscription.TryClose(e);
            }
        }

        return restored;
    }

    private async Task SuperviseAsync(Connection connection)
    {
        while (true)
        {
            var reason = await connection.Closed.ConfigureAwait(false);
            var lost = await StopAsync(connection).ConfigureAwait(false);
            if (_disposeCts.IsCancellationRequested)
            {
                return;
            }

            Log.Disconnected(_logger, SocketPath, reason);
            Raise(Disconnected, new BusDisconnectedEventArgs(reason, lost));
            if (!_options.AutoReconnect)
            {
                FailEverything(new BusConnectionException($"the connection to the agent at {SocketPath} was lost: {reason?.Message ?? "closed"}", reason));
                return;
            }

            var next = await ReconnectAsync().ConfigureAwait(false);
            if (next is null)
            {
                return;
            }

            connection = next;
        }
    }

    /// <summary>Stops the connection's loops and fails its requests; returns the frames lost in flight.</summary>
    private async Task<long> StopAsync(Connection connection)
    {
        connection.Close(null);
        lock (_stateGate)
        {
            if (_connection == connection)
            {
                Volatile.Write(ref _connection, null);
                if (_connected.Task.IsCompleted)
                {
                    _connected = new TaskCompletionSource<Connection>(TaskCreationOptions.RunContinuationsAsynchronously);
                }
            }
        }

        try
        {
            await Task.WhenAll(connection.ReaderTask, connection.WriterTask).ConfigureAwait(false);
        }
        catch
        {
            // The loops report through connection.Closed.
        }

        FailCalls(connection, $"the connection to the agent at {SocketPath} was lost while the call was pending");
        var lostError = new BusConnectionException($"the connection to the agent at {SocketPath} was lost");
        foreach (var (id, pending) in _requests)
        {
            if (pending.Connection == connection && _requests.TryRemove(id, out _))
            {
                pending.Fail(lostError);
            }
        }

        long lost;
        lock (_writeGate)
        {
            lost = _sendingFrames + _unsentFrames;
            _sendingFrames = 0;
            _sending.ResetWrittenCount();
            _unsent = default;
            _unsentFrames = 0;
        }

        Interlocked.Add(ref _lostFrames, lost);
        connection.Dispose();
        return lost;
    }

    private async Task<Connection?> ReconnectAsync()
    {
        var token = _disposeCts.Token;
        for (var attempt = 1; ; attempt++)
        {
            var delay = BackoffDelay(attempt, _options.ReconnectMinDelay, _options.ReconnectMaxDelay, Random.Shared.NextDouble());
            try
            {
                await Task.Delay(delay, _time, token).ConfigureAwait(false);
                var connection = await OpenAsync(token).ConfigureAwait(false);
                try
                {
                    var restored = await ActivateAsync(connection, restore: true, token).ConfigureAwait(false);
                    Log.Reconnected(_logger, SocketPath, connection.Welcome.ConnectionId, attempt, restored);
                    Raise(Reconnected, new BusReconnectedEventArgs(connection.Welcome.ConnectionId, attempt, restored));
                    return connection;
                }
                catch (Exception e) when (e is not OperationCanceledException || !token.IsCancellationRequested)
                {
                    connection.Close(e);
                    await StopAsync(connection).ConfigureAwait(false);
                    throw;
                }
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
                return null;
            }
            catch (Exception e)
            {
                Log.ReconnectFailed(_logger, SocketPath, attempt, e.Message);
            }
        }
    }

    /// <summary>Exponential backoff with equal jitter: half the capped delay, plus up to half again at random.</summary>
    internal static TimeSpan BackoffDelay(int attempt, TimeSpan min, TimeSpan max, double random)
    {
        var exponent = Math.Min(attempt - 1, 30);
        var capped = Math.Min(max.Ticks, min.Ticks * (double)(1L << exponent));
        return TimeSpan.FromTicks((long)((capped / 2) + (capped / 2 * random)));
    }

    private void FailEverything(Exception error)
    {
        Volatile.Write(ref _fault, error);
        lock (_writeGate)
        {
            _spaceAvailable?.TrySetResult();
            _spaceAvailable = null;
        }

        List<BusSubscription> subscriptions;
        lock (_subscriptionsGate)
        {
            subscriptions = [.. _subscriptions];
            _subscriptions.Clear();
        }

        foreach (var subscription in subscriptions)
        {
            subscription.TryClose(error);
        }

        lock (_stateGate)
        {
            _connected.TrySetException(error);
            _connected.Task.Exception?.Handle(_ => true);
        }
    }

    // ----- writer -----

    private async Task WriteLoopAsync(Connection connection)
    {
        var token = connection.Token;
        try
        {
            while (true)
            {
                TaskCompletionSource? space = null;
                var idle = false;
                ReadOnlyMemory<byte> unsent;
                lock (_writeGate)
                {
                    unsent = _unsent;
                    _unsent = default;
                    if (_pending.WrittenCount == 0 && unsent.IsEmpty)
                    {
                        _writerWaiting = true;
                        _parkedSocket = connection.Io;
                        idle = true;
                    }
                    else
                    {
                        (_pending, _sending) = (_sending, _pending);
                        _sendingFrames = _pendingFrames + _unsentFrames;
                        _unsentFrames = 0;
                        _pendingFrames = 0;
                        space = _spaceAvailable;
                        _spaceAvailable = null;
                    }
                }

                if (idle)
                {
                    await _writerSignal.WaitAsync(token).ConfigureAwait(false);
                    continue;
                }

                space?.TrySetResult();
                await connection.Io.SendAsync(unsent, token).ConfigureAwait(false);
                await connection.Io.SendAsync(_sending.WrittenMemory, token).ConfigureAwait(false);
                lock (_writeGate)
                {
                    _sending.ResetWrittenCount();
                    _sendingFrames = 0;
                }
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            connection.Close(new BusConnectionException($"writing to the agent at {SocketPath} failed: {e.Message}", e));
        }
        finally
        {
            lock (_writeGate)
            {
                _writerWaiting = false;
                _parkedSocket = null;
            }
        }
    }

    // ----- reader -----

    private async Task ReadLoopAsync(Connection connection)
    {
        var token = connection.Token;
        var reader = connection.Reader;
        try
        {
            while (true)
            {
                while (reader.TryTake(out var offset, out var length))
                {
                    BlockedDelivery blocked;
                    t_corking = this;
                    try
                    {
                        blocked = ProcessFrame(connection, reader.Buffer.AsSpan(offset, length));
                    }
                    finally
                    {
                        t_corking = null;
                    }

                    if (blocked.Message is not null)
                    {
                        SendCorked();
                        await DeliverBlockedAsync(connection, blocked, token).ConfigureAwait(false);
                    }
                }

                SendCorked();

                if (!await reader.FillAsync(connection.Io, token).ConfigureAwait(false))
                {
                    var reason = reader.HasPartialFrame
                        ? new BusConnectionException($"the agent at {SocketPath} closed the connection in the middle of a frame")
                        : new BusConnectionException($"the agent at {SocketPath} closed the connection");
                    connection.Close(reason);
                    return;
                }
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            connection.Close(new BusConnectionException($"reading from the agent at {SocketPath} failed: {e.Message}", e));
        }
    }

    private readonly record struct BlockedDelivery(BusMessage? Message, uint[]? Remaining);

    private async ValueTask DeliverBlockedAsync(Connection connection, BlockedDelivery blocked, CancellationToken token)
    {
        foreach (var id in blocked.Remaining!)
        {
            if (!connection.Subscriptions.TryGetValue(id, out var subscription))
            {
                continue;
            }

            // Waiting here stops the socket reader: the agent's buffer and drop accounting take over.
            while (!subscription.TryWrite(blocked.Message!))
            {
                if (!await subscription.WaitToWriteAsync(token).ConfigureAwait(false))
                {
                    break; // unsubscribed meanwhile
                }
            }
        }
    }

    private BlockedDelivery ProcessFrame(Connection connection, ReadOnlySpan<byte> frame)
    {
        var status = DeliverFrame.TryDecode(frame, _deliverIds, out var sequence, out var publishStart, out var publishLength);
        if (status == DeliverDecode.Deliver)
        {
            var publish = frame.Slice(publishStart, publishLength).ToArray();
            if (!PublishFrame.TryReadLayout(publish, out var layout))
            {
                throw new InvalidDataException("the agent delivered a malformed Publish");
            }

            var message = new BusMessage(_topics.Get(publish.AsSpan(layout.Topic)), sequence, publish, layout);
            for (var i = 0; i < _deliverIds.Count; i++)
            {
                if (connection.Subscriptions.TryGetValue(_deliverIds[i], out var subscription) && !subscription.TryWrite(message) && !subscription.IsClosed)
                {
                    return new BlockedDelivery(message, [.. _deliverIds.Skip(i)]);
                }
            }

            return default;
        }

        Envelope envelope;
        try
        {
            envelope = Envelope.Parser.ParseFrom(frame);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new InvalidDataException($"the agent sent a malformed frame: {e.Message}", e);
        }

        HandleControl(connection, envelope);
        return default;
    }

    private void HandleControl(Connection connection, Envelope envelope)
    {
        switch (envelope.BodyCase)
        {
            case Envelope.BodyOneofCase.SubscribeAck:
            {
                var ack = envelope.SubscribeAck;
                if (_requests.TryRemove(envelope.RequestId, out var pending) && pending.Subscription is { } subscription && !subscription.IsClosed)
                {
                    // Bind before completing: deliveries for the new id may be next on this reader.
                    connection.Subscriptions[ack.SubscriptionId] = subscription;
                    subscription.Bind(connection, ack.SubscriptionId);
                    lock (_subscriptionsGate)
                    {
                        if (!_subscriptions.Contains(subscription))
                        {
                            _subscriptions.Add(subscription);
                        }
                    }

                    pending.Complete(envelope);
                }
                else
                {
                    // Nobody waits for it any more (cancelled, or a stale frame from before a reconnect).
                    pending?.Complete(envelope);
                    EnqueueControl(new Envelope { Unsubscribe = new Unsubscribe { SubscriptionId = ack.SubscriptionId } });
                }

                break;
            }

            case Envelope.BodyOneofCase.UnsubscribeAck:
            case Envelope.BodyOneofCase.Pong:
                if (_requests.TryRemove(envelope.RequestId, out var reply))
                {
                    reply.Complete(envelope);
                }

                break;
            case Envelope.BodyOneofCase.Error:
            {
                var error = envelope.Error;
                var exception = new BusException(error.Code, $"{error.Code}: {error.Message}", error.Fatal);
                if (error.Fatal)
                {
                    connection.FatalError = exception;
                }

                if (envelope.RequestId != 0 && _requests.TryRemove(envelope.RequestId, out var failed))
                {
                    failed.Fail(exception);
                }
                else
                {
                    Log.AgentError(_logger, error.Code, error.Message, error.Fatal);
                    Raise(ErrorReceived, new BusErrorEventArgs(error.Code, error.Message, error.Fatal, envelope.RequestId));
                }

                break;
            }

            case Envelope.BodyOneofCase.Dropped:
            {
                var dropped = envelope.Dropped;
                var total = Interlocked.Add(ref _droppedTotal, (long)dropped.Count);
                Log.MessagesDropped(_logger, dropped.Count, dropped.Total, dropped.Reason);
                Raise(Dropped, new BusDroppedEventArgs(dropped.Count, dropped.Total, total, dropped.Reason));
                break;
            }

            case Envelope.BodyOneofCase.RpcRequest:
            case Envelope.BodyOneofCase.RpcResponse:
                HandleRpc(envelope);
                break;
            case Envelope.BodyOneofCase.Ping:
                EnqueueControl(new Envelope { RequestId = envelope.RequestId, Pong = new Pong { Nonce = envelope.Ping.Nonce } });
                break;
            default:
                Log.UnexpectedFrame(_logger, envelope.BodyCase.ToString());
                break;
        }
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

    private struct TopicStream(byte[] utf8, ulong sequence)
    {
        public readonly byte[] Utf8 = utf8;
        public ulong Sequence = sequence;
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
    }
}
