using System.IO.Pipelines;
using System.Net.Sockets;
using System.Threading.Channels;
using DaemonEye.Configuration;
using DaemonEye.Gateway.Rpc;
using DaemonEye.Gateway.Security;
using DaemonEye.Grains;
using DaemonEye.Logging;
using DaemonEye.Networking;
using DaemonEye.Protocol;
using DaemonEye.Protocol.V1;
using DaemonEye.Topics;
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
    private const string HeartbeatTopicPrefix = WellKnownTopics.HeartbeatPrefix;

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
    private long _queuedBytes; // everything queued for the writer, and any rest a direct send left (broker.max_outbound_bytes)
    private readonly long _maxOutboundBytes;
    private readonly RecentCorrelationIds? _recentIds; // broker.correlation_window; null when 0
    private int _peakQueued; // the most messages and bytes ever queued at once: the headroom actually used
    private long _peakQueuedBytes;
    private int _slowReaderCut;
    private long _dropsPending;
    private long _dropsTotal;
    private ulong _dropsReported; // writer loop only: the sum of every Dropped.count sent so far
    private uint _lastSubscriptionId;
    private volatile bool _closed;
    private bool _welcomed;

    private string? _heartbeatTopic;
    private TopicEntry? _heartbeatEntry;
    private string _clientId = "(before hello)";

    public BusConnection(long id, Socket socket, BrokerOptions options, IGrainFactory grains, ConnectionDirectory directory, RpcRouter rpc, GatewayStatistics stats, ILogger logger, Metrics.BusMetrics metrics, AccessControl access, TopicRoutes routes, ConnectionGuard guard, Durability.DurableLog? durable = null)
    {
        _durable = durable;
        _guard = guard;
        _deadlines = new ReadDeadlines(guard.Time, guard.Settings, guard.Time.GetTimestamp());
        _logBudget = guard.NewConnectionBudget();
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
        _maxOutboundBytes = options.MaxOutboundBytes;
        _recentIds = options.CorrelationWindow > 0 ? new RecentCorrelationIds(options.CorrelationWindow) : null;
        _maxFrameSize = options.MaxFrameSize;
        _publishes = new PublishAccumulator(grains, routes, options.MaxTopicsPerConnection, options.MaxTopics, metrics, durable);
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

    /// <summary>Bytes waiting for the client now: queued frames and deliveries, and any rest a direct send left.</summary>
    public long QueuedBytes => Math.Max(0, Interlocked.Read(ref _queuedBytes));

    /// <summary>The outbound buffer's size in bytes (broker.max_outbound_bytes).</summary>
    public long BufferBytesCapacity => _maxOutboundBytes;

    /// <summary>The most messages that ever waited at once for this client.</summary>
    public int PeakQueued => Volatile.Read(ref _peakQueued);

    /// <summary>The most bytes that ever waited at once for this client.</summary>
    public long PeakQueuedBytes => Interlocked.Read(ref _peakQueuedBytes);

    /// <summary>Subscriptions this connection holds now (read from other threads: a moment's view).</summary>
    public int SubscriptionCount => _subscriptions.Count;

    private ISubscriptionRegistryGrain Registry => _grains.GetGrain<ISubscriptionRegistryGrain>(RegistryGrain.Key);

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        _stats.ConnectionOpened();
        _guard.Track(this);
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
            if (MayWarn())
            {
                LogConnectionFailed(_logger, Id, _clientId, ex);
            }

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
        await StopAllDurableAsync();
        if (_subscriptions.Count > 0)
        {
            try
            {
                await Registry.RemoveConnection(Id);
            }
            catch (Exception ex)
            {
                if (MayWarn())
                {
                    LogCleanupFailed(_logger, Id, ex);
                }
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
        ReportSuppressed();
        LogClosed(_logger, Id, _clientId, _subscriptions.Count, DroppedTotal);
    }

    private void Fatal(ErrorCode code, string message, uint requestId = 0)
    {
        _stats.AddProtocolError();
        if (MayWarn())
        {
            LogProtocolError(_logger, Id, _clientId, code, message);
        }

        TryEnqueueError(requestId, code, message, fatal: true);
    }

    private void TryEnqueueError(uint requestId, ErrorCode code, string message, bool fatal = false) =>
        QueueControl(Framing.ToFrame(new Envelope
        {
            RequestId = requestId,
            Error = new Error { Code = code, Message = message, Fatal = fatal },
        }));

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

    [LoggerMessage(EventId = 2001, Level = LogLevel.Information, Message = "Connection {ConnectionId} is client {ClientId} ({Role}, {ClientVersion}), pid {Pid}, uid {Uid}")]
    private static partial void LogWelcomed(ILogger logger, long connectionId, string clientId, Role role, Untrusted clientVersion, int pid, uint uid);

    [LoggerMessage(EventId = 2002, Level = LogLevel.Information, Message = "Connection {ConnectionId} ({ClientId}) closed; {Subscriptions} subscriptions released, {Dropped} messages dropped in its lifetime")]
    private static partial void LogClosed(ILogger logger, long connectionId, string clientId, int subscriptions, long dropped);

    [LoggerMessage(EventId = 2003, Level = LogLevel.Warning, Message = "Connection {ConnectionId} ({ClientId}) protocol error {Code}: {Detail}; closing it")]
    private static partial void LogProtocolError(ILogger logger, long connectionId, string clientId, ErrorCode code, Untrusted detail);

    [LoggerMessage(EventId = 2004, Level = LogLevel.Information, Message = "Connection {ConnectionId} ({ClientId}) lost: {Reason}")]
    private static partial void LogConnectionLost(ILogger logger, long connectionId, string clientId, Untrusted reason);

    [LoggerMessage(EventId = 2005, Level = LogLevel.Error, Message = "Connection {ConnectionId} ({ClientId}) failed")]
    private static partial void LogConnectionFailed(ILogger logger, long connectionId, string clientId, Exception exception);

    [LoggerMessage(EventId = 2006, Level = LogLevel.Error, Message = "Connection {ConnectionId}: {Count} published messages could not be routed")]
    private static partial void LogRoutingFailed(ILogger logger, long connectionId, int count, Exception exception);

    [LoggerMessage(EventId = 2008, Level = LogLevel.Warning, Message = "Connection {ConnectionId} ({ClientId}) cut off: it is not reading; {QueuedBytes} bytes wait for it and a {FrameBytes}-byte frame would pass broker.max_outbound_bytes ({MaxOutboundBytes})")]
    private static partial void LogSlowReaderCut(ILogger logger, long connectionId, string clientId, long queuedBytes, int frameBytes, long maxOutboundBytes);

    [LoggerMessage(EventId = 2009, Level = LogLevel.Warning, Message = "Connection {ConnectionId} ({ClientId}): publish on a new topic refused by {Limit} ({Refused} such refusals in the agent so far)")]
    private static partial void LogTopicRefused(ILogger logger, long connectionId, string clientId, string limit, long refused);

    [LoggerMessage(EventId = 2007, Level = LogLevel.Warning, Message = "Connection {ConnectionId}: releasing its subscriptions failed")]
    private static partial void LogCleanupFailed(ILogger logger, long connectionId, Exception exception);
}
