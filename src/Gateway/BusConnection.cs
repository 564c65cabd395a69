using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Threading.Channels;
using DaemonEye.Configuration;
using DaemonEye.Gateway.Rpc;
using DaemonEye.Gateway.Security;
using DaemonEye.Grains;
using DaemonEye.Networking;
using DaemonEye.Protocol;
using DaemonEye.Protocol.V1;
using DaemonEye.Topics;
using Google.Protobuf;
using Microsoft.Extensions.Logging;
using ErrorCode = DaemonEye.Protocol.V1.ErrorCode;

namespace DaemonEye.Gateway;

/// <summary>
/// One client on the bus socket. The read loop parses frames, groups the Publish frames of each
/// read by topic and routes them with one grain call per topic, awaiting those calls before it
/// reads again (so one publisher's messages on one topic stay in order, and a publisher faster
/// than the bus is slowed by the socket rather than by memory). The write loop drains a bounded
/// outbound queue into the socket; when the queue is full, messages for this connection only are
/// dropped, counted and reported with a Dropped notice. An RPC frame for a connection whose writer
/// is idle skips the queue: the routing thread sends it itself (see <see cref="SendLocked"/>).
/// </summary>
internal sealed partial class BusConnection : IRpcPeer
{
    private const int FlushThreshold = 64 * 1024;
    private const string HeartbeatTopicPrefix = "control.health.heartbeat.";

    private readonly Socket _socket;
    private readonly ReactorSocket _io; // every read and write of the socket (see SocketReactor)
    private readonly PipeReader _input;
    private readonly PipeWriter _output;
    private readonly Channel<Outbound> _outbound = Channel.CreateUnbounded<Outbound>(
        new UnboundedChannelOptions { SingleReader = true, SingleWriter = false, AllowSynchronousContinuations = false });
    private readonly IGrainFactory _grains;
    private readonly ConnectionDirectory _directory;
    private readonly GatewayStatistics _stats;
    private readonly ILogger _logger;
    private readonly RpcRouter _rpc;
    private readonly PeerCredentials? _peer;
    private readonly PublishAccumulator _publishes;
    private readonly Metrics.DeliveryMeter _delivery;
    private readonly Dictionary<uint, string> _subscriptions = [];
    private readonly int _capacity;
    private readonly int _maxFrameSize;
    private readonly int _maxSubscriptions;
    private readonly AccessControl _access;
    private AccessPolicy _policy = AccessPolicy.Subscriber(); // replaced at the handshake
    private int _queued;
    private long _dropsPending;
    private long _dropsTotal;
    private ulong _dropsReported; // writer loop only: the sum of every Dropped.count sent so far
    private uint _lastSubscriptionId;
    private volatile bool _closed;
    private bool _welcomed;

    // The direct send path. The writer loop marks itself idle (under the gate) only once the queue is
    // empty and every byte it wrote is flushed; while it is idle a router may send a frame on the
    // socket itself. The writer takes the gate before it writes again, so bytes never interleave; a
    // frame the kernel took only part of leaves its rest here, which the writer sends first.
    private readonly Lock _sendGate = new();
    private bool _writerIdle;
    private ReadOnlyMemory<byte> _unsent;

    // Corking (see HandleRpc): the frames readers routed to this connection during their current
    // read, guarded by _sendGate; and, on the reading side, the connections this read corked for.
    private const int InitialCork = 4 * 1024;
    private const int MaxIdleCork = 256 * 1024;
    [ThreadStatic]
    private static BusConnection? t_corking;
    private ArrayBufferWriter<byte> _cork = new(InitialCork);
    private readonly List<BusConnection> _corkedFor = [];

    // A collector is registered (and its presence announced) before its Welcome is queued, so a request
    // routed to it in between (the task coordinator dispatches as soon as an instance appears) waits
    // here and is queued right after the Welcome: a client never sees a request before its Welcome.
    private readonly Lock _welcomeGate = new();
    private volatile bool _welcomeQueued;
    private List<RpcRequest>? _early;
    private string? _heartbeatTopic;
    private TopicEntry? _heartbeatEntry;
    private string _clientId = "(before hello)";

    public BusConnection(long id, Socket socket, BrokerOptions options, IGrainFactory grains, ConnectionDirectory directory, RpcRouter rpc, GatewayStatistics stats, ILogger logger, Metrics.BusMetrics metrics, AccessControl access)
    {
        _access = access;
        _maxSubscriptions = options.MaxSubscriptionsPerConnection;
        Id = id;
        _socket = socket;
        _peer = PeerCredentials.Of(socket);
        _rpc = rpc;
        _io = new ReactorSocket(socket);
        var stream = new ReactorStream(_io);
        _input = PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: 64 * 1024, minimumReadSize: 16 * 1024, leaveOpen: true));
        _output = PipeWriter.Create(stream, new StreamPipeWriterOptions(minimumBufferSize: 64 * 1024, leaveOpen: true));
        _grains = grains;
        _directory = directory;
        _stats = stats;
        _logger = logger;
        _capacity = options.MessageBufferSize;
        _maxFrameSize = options.MaxFrameSize;
        _publishes = new PublishAccumulator(grains, metrics: metrics);
        System.Diagnostics.Debug.Assert(_outbound.Reader.CanPeek, "the direct send path asks the queue whether it is empty");
        _delivery = metrics.NewDeliveryMeter();
    }

    public long Id { get; }

    public string ClientId => _clientId;

    string IRpcPeer.Name => _clientId;

    /// <summary>The peer process, as the kernel reports it.</summary>
    public PeerCredentials? Peer => _peer;

    public long DroppedTotal => Interlocked.Read(ref _dropsTotal);

    /// <summary>Messages in the outbound buffer now (metrics and health).</summary>
    public int Queued => Volatile.Read(ref _queued);

    /// <summary>The outbound buffer's size in messages (broker.message_buffer_size).</summary>
    public int BufferCapacity => _capacity;

    /// <summary>Subscriptions this connection holds now (read from other threads: a moment's view).</summary>
    public int SubscriptionCount => _subscriptions.Count;

    private ISubscriptionRegistryGrain Registry => _grains.GetGrain<ISubscriptionRegistryGrain>(RegistryGrain.Key);

    /// <summary>
    /// Called by Topic grains (any thread): takes as many messages as the outbound buffer has room
    /// for and drops the rest, counted. Never blocks. Returns -1 once the connection is closed.
    /// </summary>
    public int Offer(DeliveryTarget target, PublishBatch batch, ulong firstSequence)
    {
        if (_closed)
        {
            return -1;
        }

        var count = batch.Count;
        var accepted = Reserve(count);
        if (accepted > 0)
        {
            _outbound.Writer.TryWrite(Outbound.Delivery(batch, target.SubscriptionIds, firstSequence, accepted));
        }

        if (accepted < count)
        {
            var dropped = count - accepted;
            Interlocked.Add(ref _dropsTotal, dropped);
            _stats.AddDropped(dropped);
            if (Interlocked.Add(ref _dropsPending, dropped) == dropped)
            {
                // First drop since the last notice: wake the writer even if nothing else is queued.
                _outbound.Writer.TryWrite(Outbound.DropMarker());
            }
        }

        return accepted;
    }

    private int Reserve(int wanted)
    {
        while (true)
        {
            var queued = Volatile.Read(ref _queued);
            var free = _capacity - queued;
            if (free <= 0)
            {
                return 0;
            }

            var take = Math.Min(free, wanted);
            if (Interlocked.CompareExchange(ref _queued, queued + take, queued) == queued)
            {
                return take;
            }
        }
    }

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        _stats.ConnectionOpened();
        var writer = Task.Run(WriteLoopAsync, CancellationToken.None);
        try
        {
            await ReadLoopAsync(cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Agent shutting down.
        }
        catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException)
        {
            LogConnectionLost(_logger, Id, _clientId, ex.Message);
        }
        catch (Exception ex)
        {
            LogConnectionFailed(_logger, Id, _clientId, ex);
            TryEnqueueError(0, ErrorCode.Internal, "the agent failed while serving this connection; reconnect", fatal: true);
        }
        finally
        {
            await CloseAsync(writer);
        }
    }

    private async Task CloseAsync(Task writer)
    {
        SendCorked(); // what this connection's last read routed to others still goes
        _closed = true;
        _directory.Remove(Id);
        _rpc.PeerClosed(this);
        if (_subscriptions.Count > 0)
        {
            try
            {
                await Registry.RemoveConnection(Id);
            }
            catch (Exception ex)
            {
                LogCleanupFailed(_logger, Id, ex);
            }
        }

        _outbound.Writer.TryComplete();
        try
        {
            // Let the writer send what is queued (an Error, say); a peer that does not read gets 2 s.
            await writer.WaitAsync(TimeSpan.FromSeconds(2));
        }
        catch (Exception)
        {
            // Timed out or the peer is gone; closing the socket ends the writer.
        }

        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (SocketException)
        {
            // Already closed by the peer.
        }

        _io.Dispose();
        await writer.ContinueWith(static _ => { }, TaskScheduler.Default);
        _stats.ConnectionClosed();
        LogClosed(_logger, Id, _clientId, _subscriptions.Count, DroppedTotal);
    }

    private async Task ReadLoopAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await _input.ReadAsync(cancellationToken);
            _publishes.ReadTimestamp = System.Diagnostics.Stopwatch.GetTimestamp();
            var buffer = result.Buffer;
            var stop = false;
            while (!stop)
            {
                var status = Framing.TryReadFrame(ref buffer, _maxFrameSize, out var frame, out var declared);
                if (status == FrameStatus.Incomplete)
                {
                    break;
                }

                if (status == FrameStatus.TooLarge)
                {
                    await FlushPublishesAsync();
                    _stats.AddLimitRefusal(Limit.MaxFrameSize);
                    Fatal(ErrorCode.FrameTooLarge, $"frame length prefix is {declared} bytes; the maximum frame size is {_maxFrameSize} bytes (broker.max_frame_size)");
                    stop = true;
                    break;
                }

                var control = HandleFrame(frame, out var fatal);
                if (fatal)
                {
                    await FlushPublishesAsync();
                    stop = true;
                }
                else if (control is not null)
                {
                    await FlushPublishesAsync();
                    if (control.BodyCase is Envelope.BodyOneofCase.RpcRequest or Envelope.BodyOneofCase.RpcResponse)
                    {
                        HandleRpc(control);
                    }
                    else
                    {
                        SendCorked();
                        await HandleControlAsync(control);
                    }
                }
            }

            // Every RPC frame this read routed leaves now: one send per destination.
            SendCorked();
            if (!stop)
            {
                await FlushPublishesAsync();
            }

            if (!stop && result.IsCompleted && buffer.Length > 0)
            {
                var expected = Framing.TryReadFrame(ref buffer, int.MaxValue, out _, out var declared) == FrameStatus.Incomplete && buffer.Length >= Framing.HeaderSize
                    ? $"{declared} bytes of frame body after its 4-byte length prefix"
                    : "a 4-byte length prefix";
                Fatal(ErrorCode.TruncatedFrame, $"the connection ended in the middle of a frame: {buffer.Length} bytes left over, expected {expected}");
                stop = true;
            }

            _input.AdvanceTo(buffer.Start, buffer.End);
            if (stop || result.IsCompleted)
            {
                return;
            }
        }
    }

    /// <summary>
    /// Handles one frame synchronously. Publishes are accumulated; frames that need the registry
    /// or a barrier are returned for <see cref="HandleControlAsync"/>.
    /// </summary>
    private Envelope? HandleFrame(ReadOnlySequence<byte> frame, out bool fatal)
    {
        fatal = false;
        byte[]? rented = null;
        var span = frame.IsSingleSegment ? frame.FirstSpan : CopyToRented(frame, out rented);
        try
        {
            if (_welcomed)
            {
                switch (Wire.ScanPublish(span, out var requestId, out var publish, out var topic))
                {
                    case ScanResult.Publish:
                        Accept(span[topic], span[publish], requestId);
                        return null;
                    case ScanResult.Malformed:
                        fatal = true;
                        Fatal(ErrorCode.MalformedFrame, $"a frame of {span.Length} bytes is not a valid Envelope (protobuf wire-format error)");
                        return null;
                }
            }

            Envelope envelope;
            try
            {
                envelope = Envelope.Parser.ParseFrom(span);
            }
            catch (InvalidProtocolBufferException ex)
            {
                fatal = true;
                Fatal(ErrorCode.MalformedFrame, $"a frame of {span.Length} bytes is not a valid Envelope: {ex.Message}");
                return null;
            }

            if (!_welcomed)
            {
                fatal = !Handshake(envelope);
                return null;
            }

            switch (envelope.BodyCase)
            {
                case Envelope.BodyOneofCase.Publish:
                    // A Publish envelope with extra fields: re-encode the Publish on its own.
                    var bytes = envelope.Publish.ToByteArray();
                    Accept(System.Text.Encoding.UTF8.GetBytes(envelope.Publish.Topic), bytes, envelope.RequestId);
                    return null;
                case Envelope.BodyOneofCase.Subscribe:
                case Envelope.BodyOneofCase.Unsubscribe:
                case Envelope.BodyOneofCase.Ping:
                case Envelope.BodyOneofCase.RpcRequest:
                case Envelope.BodyOneofCase.RpcResponse:
                    return envelope;
                case Envelope.BodyOneofCase.Pong:
                    return null;
                case Envelope.BodyOneofCase.None:
                    fatal = true;
                    Fatal(ErrorCode.MalformedFrame, "the envelope has no body; expected one of publish, subscribe, unsubscribe, ping, pong", envelope.RequestId);
                    return null;
                default:
                    fatal = true;
                    Fatal(ErrorCode.UnexpectedMessage, $"a client may not send {envelope.BodyCase}; allowed after the handshake: publish, subscribe, unsubscribe, ping, pong, rpc_request, rpc_response", envelope.RequestId);
                    return null;
            }
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    private static ReadOnlySpan<byte> CopyToRented(ReadOnlySequence<byte> frame, out byte[] rented)
    {
        rented = ArrayPool<byte>.Shared.Rent((int)frame.Length);
        frame.CopyTo(rented);
        return rented.AsSpan(0, (int)frame.Length);
    }

    private void Accept(ReadOnlySpan<byte> topicUtf8, ReadOnlySpan<byte> publish, uint requestId)
    {
        var entry = _publishes.Resolve(topicUtf8, out var error);
        if (entry is null)
        {
            _stats.AddProtocolError();
            TryEnqueueError(requestId, ErrorCode.InvalidTopic, $"publish refused: {error}");
            return;
        }

        if (!_policy.PublishesAnything && _policy.CheckPublish(entry) is { } rule)
        {
            Deny(rule, requestId, $"publish to '{entry.Topic}'");
            return;
        }

        if (PublishCorrelation.FindInvalidField(publish) is var bad and not 0)
        {
            RefuseCorrelation(requestId, $"publish to '{entry.Topic}' refused: {PublishCorrelation.FieldName(bad)} is not a valid correlation id");
            return;
        }

        _publishes.Add(entry, publish);
        // Only collectors have a heartbeat topic; the entry is cached so the check is a reference compare.
        if (_heartbeatTopic is not null && (ReferenceEquals(entry, _heartbeatEntry) || entry.Topic == _heartbeatTopic))
        {
            _heartbeatEntry = entry;
            // A collector's heartbeat on its own topic: the supervisor hears it without subscribing.
            _rpc.NotifyHeartbeat(_clientId);
        }
    }

    private async Task FlushPublishesAsync()
    {
        if (_publishes.IsEmpty)
        {
            return;
        }

        SendCorked(); // nothing corked waits behind the grain calls

        var pending = _publishes.PendingMessages;
        try
        {
            await _publishes.FlushAsync(Id);
            _stats.AddPublished(pending);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            _stats.AddUnrouted(pending);
            LogRoutingFailed(_logger, Id, pending, ex);
            TryEnqueueError(0, ErrorCode.Internal, $"{pending} published messages could not be routed: {ex.Message}");
        }
    }

    private bool Handshake(Envelope envelope)
    {
        if (envelope.BodyCase != Envelope.BodyOneofCase.Hello)
        {
            Fatal(ErrorCode.HandshakeRequired, $"the first frame must be Hello; got {(envelope.BodyCase == Envelope.BodyOneofCase.None ? "an envelope with no body" : envelope.BodyCase.ToString())}", envelope.RequestId);
            return false;
        }

        var hello = envelope.Hello;
        if (hello.ProtocolVersion != ProtocolConstants.Version)
        {
            Fatal(ErrorCode.UnsupportedVersion, $"protocol version {hello.ProtocolVersion} is not supported; this agent speaks version {ProtocolConstants.Version}", envelope.RequestId);
            return false;
        }

        if (hello.ClientId.Length is 0 or > ProtocolConstants.MaxClientIdLength)
        {
            Fatal(ErrorCode.HandshakeRequired, $"hello.client_id must be 1 to {ProtocolConstants.MaxClientIdLength} characters; got {hello.ClientId.Length}", envelope.RequestId);
            return false;
        }

        _clientId = hello.ClientId;
        var decision = _access.Decide(hello, _peer, Id);
        if (decision.Policy is null)
        {
            Fatal(ErrorCode.NotAuthorized, decision.Refusal!, envelope.RequestId);
            return false;
        }

        _policy = decision.Policy;
        var role = _policy.Role;
        if (role == Role.Collector)
        {
            var presence = new CollectorPresence(_clientId, Id, _peer?.Pid ?? 0, _peer?.Uid ?? uint.MaxValue, [.. hello.Capabilities]);
            if (!_rpc.TryRegisterCollector(this, presence, out var conflict))
            {
                Fatal(ErrorCode.Conflict, conflict!, envelope.RequestId);
                return false;
            }

            _heartbeatTopic = HeartbeatTopicPrefix + _clientId;
        }

        _welcomed = true;
        _directory.Add(this);
        Enqueue(Outbound.Control(Framing.ToFrame(new Envelope
        {
            RequestId = envelope.RequestId,
            Welcome = new Welcome
            {
                ProtocolVersion = ProtocolConstants.Version,
                ConnectionId = $"c{Id}",
                AgentVersion = AgentInfo.Version,
                MaxFrameSize = (uint)_maxFrameSize,
                MessageBufferSize = (uint)_capacity,
                Role = role,
            },
        })));
        lock (_welcomeGate)
        {
            foreach (var request in _early ?? [])
            {
                Enqueue(Outbound.Control(Framing.ToFrame(new Envelope { RpcRequest = request })));
            }

            _early = null;
            _welcomeQueued = true;
        }

        LogWelcomed(_logger, Id, _clientId, role, hello.ClientVersion, _peer?.Pid ?? 0, _peer?.Uid ?? uint.MaxValue);
        return true;
    }

    private async Task HandleControlAsync(Envelope envelope)
    {
        switch (envelope.BodyCase)
        {
            case Envelope.BodyOneofCase.Subscribe:
                await SubscribeAsync(envelope.RequestId, envelope.Subscribe.Pattern);
                break;
            case Envelope.BodyOneofCase.Unsubscribe:
                await UnsubscribeAsync(envelope.RequestId, envelope.Unsubscribe.SubscriptionId);
                break;
            case Envelope.BodyOneofCase.Ping:
                // Every earlier frame has been routed (publishes were flushed first): a barrier.
                Enqueue(Outbound.Control(Framing.ToFrame(new Envelope { RequestId = envelope.RequestId, Pong = new Pong { Nonce = envelope.Ping.Nonce } })));
                break;
        }
    }

    /// <summary>
    /// Routes an RPC frame on the reading thread. The frames it produces (the request for the callee,
    /// the answer for the caller, a refusal for this connection) are corked: collected per destination
    /// and sent by <see cref="SendCorked"/> once this read is done, so a read of many calls costs one
    /// send per destination rather than one per call.
    /// </summary>
    private void HandleRpc(Envelope envelope)
    {
        t_corking = this;
        try
        {
            if (envelope.BodyCase == Envelope.BodyOneofCase.RpcRequest)
            {
                if (AuthorizeRpcRequest(envelope.RpcRequest))
                {
                    _rpc.HandleRequest(this, envelope.RpcRequest);
                }
            }
            else if (AuthorizeRpcResponse(envelope.RequestId, envelope.RpcResponse))
            {
                _rpc.HandleResponse(this, envelope.RpcResponse);
            }
        }
        finally
        {
            t_corking = null;
        }
    }

    /// <summary>Sends what this connection's read corked for each destination (see <see cref="HandleRpc"/>).</summary>
    private void SendCorked()
    {
        if (_corkedFor.Count == 0)
        {
            return;
        }

        foreach (var destination in _corkedFor)
        {
            destination.FlushCork();
        }

        _corkedFor.Clear();
    }

    private async Task SubscribeAsync(uint requestId, string pattern)
    {
        var validation = TopicRules.ValidatePattern(pattern);
        if (!validation.IsValid)
        {
            TryEnqueueError(requestId, ErrorCode.InvalidPattern, $"subscribe refused: {validation.Error}");
            return;
        }

        if (_policy.CheckSubscribe(pattern) is { } rule)
        {
            Deny(rule, requestId, $"subscribe to '{pattern}'");
            return;
        }

        if (_subscriptions.Count >= _maxSubscriptions)
        {
            _stats.AddLimitRefusal(Limit.MaxSubscriptionsPerConnection);
            TryEnqueueError(requestId, ErrorCode.LimitExceeded,
                $"subscribe to '{pattern}' refused: broker.max_subscriptions_per_connection ({_maxSubscriptions}) reached on this connection; unsubscribe some or raise broker.max_subscriptions_per_connection");
            return;
        }

        var id = ++_lastSubscriptionId;
        var result = await Registry.Subscribe(new SubscriptionKey(Id, id), pattern);
        if (!result.Accepted)
        {
            if (Limits.FromKey(result.Limit) is { } limit)
            {
                _stats.AddLimitRefusal(limit);
            }

            TryEnqueueError(requestId, ErrorCode.LimitExceeded, $"subscribe to '{pattern}' refused: {result.Error}");
            return;
        }

        _subscriptions[id] = pattern;
        Enqueue(Outbound.Activate(id, Framing.ToFrame(new Envelope
        {
            RequestId = requestId,
            SubscribeAck = new SubscribeAck { SubscriptionId = id, Pattern = pattern },
        })));
    }

    private async Task UnsubscribeAsync(uint requestId, uint id)
    {
        if (!_subscriptions.Remove(id))
        {
            var known = _subscriptions.Count == 0 ? "none" : string.Join(", ", _subscriptions.Keys.Order());
            TryEnqueueError(requestId, ErrorCode.UnknownSubscription, $"subscription {id} does not exist on this connection; its subscriptions: {known}");
            return;
        }

        await Registry.Unsubscribe(new SubscriptionKey(Id, id));
        Enqueue(Outbound.Deactivate(id, Framing.ToFrame(new Envelope
        {
            RequestId = requestId,
            UnsubscribeAck = new UnsubscribeAck { SubscriptionId = id },
        })));
    }

    /// <summary>Refuses an action its role forbids: NOT_AUTHORIZED naming the rule, counted, logged.</summary>
    private void Deny(AccessRule rule, uint requestId, string action)
    {
        var message = $"{action} refused by rule {AccessRules.Name(rule)}: {_policy.Explain(rule)}";
        _access.Denied(rule, Id, _clientId, _peer, message, _policy);
        TryEnqueueError(requestId, ErrorCode.NotAuthorized, message);
    }

    private void RefuseCorrelation(uint requestId, string message)
    {
        _stats.AddLimitRefusal(Limit.CorrelationId);
        TryEnqueueError(requestId, ErrorCode.InvalidMessage, $"{message}; allowed: {CorrelationRules.Allowed}, or empty");
    }

    /// <summary>The caller's role may make calls, and the call names itself validly; a refusal is answered at once.</summary>
    private bool AuthorizeRpcRequest(RpcRequest request)
    {
        if (_policy.RpcCallDenied is { } rule)
        {
            var message = $"RPC {request.Operation} to '{request.Target}' refused by rule {AccessRules.Name(rule)}: {_policy.Explain(rule)}";
            _access.Denied(rule, Id, _clientId, _peer, message, _policy);
            DeliverResponse(RpcRouter.Failure(request, RpcErrorKind.NotAuthorized, message));
            return false;
        }

        var correlation = request.Correlation;
        var problem = correlation is null || correlation.CorrelationId.Length == 0
            ? "correlation.correlation_id is empty; every RPC call needs an id"
            : CorrelationRules.Problem("correlation.correlation_id", correlation.CorrelationId)
              ?? CorrelationRules.Problem("correlation.parent_correlation_id", correlation.ParentCorrelationId)
              ?? CorrelationRules.Problem("correlation.root_correlation_id", correlation.RootCorrelationId);
        if (problem is not null)
        {
            _stats.AddLimitRefusal(Limit.CorrelationId);
            DeliverResponse(RpcRouter.Failure(request, RpcErrorKind.InvalidOperation, $"RPC {request.Operation} refused: {problem}"));
            return false;
        }

        return true;
    }

    /// <summary>Only the callee of a pending call may answer it.</summary>
    private bool AuthorizeRpcResponse(uint requestId, RpcResponse response)
    {
        var correlationId = response.Correlation?.CorrelationId ?? string.Empty;
        if (_policy.Role != Role.Collector || _rpc.IsAnsweredByAnother(correlationId, this))
        {
            Deny(AccessRule.RpcAnswer, requestId, $"RPC response '{correlationId}'");
            return false;
        }

        return true;
    }

    private void Fatal(ErrorCode code, string message, uint requestId = 0)
    {
        _stats.AddProtocolError();
        LogProtocolError(_logger, Id, _clientId, code, message);
        TryEnqueueError(requestId, code, message, fatal: true);
    }

    private void TryEnqueueError(uint requestId, ErrorCode code, string message, bool fatal = false) =>
        Enqueue(Outbound.Control(Framing.ToFrame(new Envelope
        {
            RequestId = requestId,
            Error = new Error { Code = code, Message = message, Fatal = fatal },
        })));

    private void Enqueue(Outbound item) => _outbound.Writer.TryWrite(item);

    public void DeliverRequest(RpcRequest request)
    {
        if (!_welcomeQueued)
        {
            lock (_welcomeGate)
            {
                if (!_welcomeQueued)
                {
                    (_early ??= []).Add(request);
                    return;
                }
            }
        }

        SendOrEnqueue(new Envelope { RpcRequest = request });
    }

    public void DeliverResponse(RpcResponse response) => SendOrEnqueue(new Envelope { RpcResponse = response });

    private void SendOrEnqueue(Envelope envelope)
    {
        if (t_corking is { } reader)
        {
            lock (_sendGate)
            {
                if (_cork.WrittenCount == 0)
                {
                    reader._corkedFor.Add(this);
                }

                // Encoded straight into the cork: no frame array of its own.
                Framing.Write(_cork, envelope);
            }

            return;
        }

        var frame = Framing.ToFrame(envelope);
        lock (_sendGate)
        {
            SendLocked(frame, stable: true);
        }
    }

    /// <summary>Sends the frames corked for this connection: directly when its writer is idle, else through its queue.</summary>
    private void FlushCork()
    {
        lock (_sendGate)
        {
            if (_cork.WrittenCount == 0)
            {
                return;
            }

            SendLocked(_cork.WrittenMemory, stable: false);
            _cork.ResetWrittenCount();
            if (_cork.Capacity > MaxIdleCork)
            {
                _cork = new ArrayBufferWriter<byte>(InitialCork);
            }
        }
    }

    /// <summary>
    /// Sends whole frames on the calling thread when the writer is idle: a call then crosses the agent
    /// without waking the writer loop (two thread hand-offs fewer per hop). Never blocks: a full socket
    /// buffer takes part of the bytes or none, and the writer sends the rest. With the writer busy,
    /// the frames join its queue. <paramref name="stable"/>: the caller will not reuse the memory.
    /// </summary>
    private void SendLocked(ReadOnlyMemory<byte> frames, bool stable)
    {
        var sent = 0;
        if (_writerIdle && !_closed && !_outbound.Reader.TryPeek(out _))
        {
            // 0: the socket buffer is full; -1: the socket failed, which the writer will meet and report.
            sent = Math.Max(0, _io.TrySend(frames.Span));
        }

        if (sent == frames.Length)
        {
            return;
        }

        var rest = frames[sent..];
        rest = stable ? rest : rest.ToArray();
        if (sent > 0)
        {
            // Part of a frame went: its rest goes before anything else the writer writes; the marker wakes it.
            _unsent = rest;
            _outbound.Writer.TryWrite(Outbound.Control(ReadOnlyMemory<byte>.Empty));
        }
        else
        {
            _outbound.Writer.TryWrite(Outbound.Control(rest));
        }
    }

    /// <summary>The writer loop wakes: it owns the socket again, and first sends what the direct path left.</summary>
    private void ResumeWriting()
    {
        lock (_sendGate)
        {
            _writerIdle = false;
            if (!_unsent.IsEmpty)
            {
                _output.Write(_unsent.Span);
                _unsent = default;
            }
        }
    }

    /// <summary>True when the writer may park: nothing queued, and (the caller has flushed) nothing buffered.</summary>
    private bool TryPark()
    {
        lock (_sendGate)
        {
            _writerIdle = !_outbound.Reader.TryPeek(out _);
            return _writerIdle;
        }
    }

    private async Task WriteLoopAsync()
    {
        var reader = _outbound.Reader;
        var active = new HashSet<uint>();
        try
        {
            while (true)
            {
                if (TryPark())
                {
                    if (!await reader.WaitToReadAsync())
                    {
                        return;
                    }

                    ResumeWriting();
                }

                while (reader.TryRead(out var item))
                {
                    Write(item, active);
                    if (_output.UnflushedBytes >= FlushThreshold)
                    {
                        var flushed = await _output.FlushAsync();
                        _delivery.Flushed();
                        if (flushed.IsCompleted)
                        {
                            return;
                        }
                    }
                }

                var done = (await _output.FlushAsync()).IsCompleted;
                _delivery.Flushed();
                if (done)
                {
                    return;
                }
            }
        }
        catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException or InvalidOperationException)
        {
            // The peer went away; the read loop sees the end of the stream and closes.
            _closed = true;
        }
        catch (Exception ex)
        {
            // A fault of ours, not the peer's: say so, and end the connection rather than leave it mute.
            _closed = true;
            LogConnectionFailed(_logger, Id, _clientId, ex);
            try
            {
                _socket.Shutdown(SocketShutdown.Both);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                // Already gone.
            }
        }
        finally
        {
            await _output.CompleteAsync();
        }
    }

    private void Write(in Outbound item, HashSet<uint> active)
    {
        switch (item.Kind)
        {
            case OutboundKind.Control:
                _output.Write(item.Frame.Span);
                break;
            case OutboundKind.Activate:
                active.Add(item.SubscriptionId);
                _output.Write(item.Frame.Span);
                break;
            case OutboundKind.Deactivate:
                active.Remove(item.SubscriptionId);
                _output.Write(item.Frame.Span);
                break;
            case OutboundKind.DropMarker:
                WriteDropped();
                break;
            case OutboundKind.Delivery:
                WriteDropped();
                Interlocked.Add(ref _queued, -item.Count);
                WriteDelivery(item, active);
                break;
        }
    }

    private void WriteDelivery(in Outbound item, HashSet<uint> active)
    {
        // Deliveries queued before a SubscribeAck (the message was published before the
        // subscription took effect) or after an UnsubscribeAck are skipped for that subscription.
        ReadOnlySpan<uint> ids = item.Ids;
        var allActive = true;
        foreach (var id in ids)
        {
            if (!active.Contains(id))
            {
                allActive = false;
                break;
            }
        }

        if (!allActive)
        {
            ids = ids.ToArray().Where(active.Contains).ToArray();
            if (ids.IsEmpty)
            {
                return;
            }
        }

        var batch = item.Batch!;
        for (var i = 0; i < item.Count; i++)
        {
            Wire.WriteDeliverFrame(_output, ids, item.FirstSequence + (ulong)i, batch.Message(i).Span);
        }

        _stats.AddDelivered(item.Count);
        _delivery.Written(batch, item.Count);
    }

    private void WriteDropped()
    {
        var count = Interlocked.Exchange(ref _dropsPending, 0);
        if (count == 0)
        {
            return;
        }

        _dropsReported += (ulong)count;
        Framing.Write(_output, new Envelope
        {
            Dropped = new Dropped
            {
                Count = (ulong)count,
                Total = _dropsReported,
                Reason = $"outbound buffer full (broker.message_buffer_size = {_capacity} messages); the subscriber is reading too slowly",
            },
        });
    }

    [LoggerMessage(EventId = 2001, Level = LogLevel.Information, Message = "Connection {ConnectionId} is client {ClientId} ({Role}, {ClientVersion}), pid {Pid}, uid {Uid}")]
    private static partial void LogWelcomed(ILogger logger, long connectionId, string clientId, Role role, string clientVersion, int pid, uint uid);

    [LoggerMessage(EventId = 2002, Level = LogLevel.Information, Message = "Connection {ConnectionId} ({ClientId}) closed; {Subscriptions} subscriptions released, {Dropped} messages dropped in its lifetime")]
    private static partial void LogClosed(ILogger logger, long connectionId, string clientId, int subscriptions, long dropped);

    [LoggerMessage(EventId = 2003, Level = LogLevel.Warning, Message = "Connection {ConnectionId} ({ClientId}) protocol error {Code}: {Detail}; closing it")]
    private static partial void LogProtocolError(ILogger logger, long connectionId, string clientId, ErrorCode code, string detail);

    [LoggerMessage(EventId = 2004, Level = LogLevel.Information, Message = "Connection {ConnectionId} ({ClientId}) lost: {Reason}")]
    private static partial void LogConnectionLost(ILogger logger, long connectionId, string clientId, string reason);

    [LoggerMessage(EventId = 2005, Level = LogLevel.Error, Message = "Connection {ConnectionId} ({ClientId}) failed")]
    private static partial void LogConnectionFailed(ILogger logger, long connectionId, string clientId, Exception exception);

    [LoggerMessage(EventId = 2006, Level = LogLevel.Error, Message = "Connection {ConnectionId}: {Count} published messages could not be routed")]
    private static partial void LogRoutingFailed(ILogger logger, long connectionId, int count, Exception exception);

    [LoggerMessage(EventId = 2007, Level = LogLevel.Warning, Message = "Connection {ConnectionId}: releasing its subscriptions failed")]
    private static partial void LogCleanupFailed(ILogger logger, long connectionId, Exception exception);
}
