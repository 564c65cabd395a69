using System.Net.Sockets;
using DaemonEye.Configuration;
using DaemonEye.Gateway.Security;
using DaemonEye.Grains;
using DaemonEye.Networking;
using DaemonEye.Protocol;
using DaemonEye.Protocol.V1;
using ErrorCode = DaemonEye.Protocol.V1.ErrorCode;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DaemonEye.Gateway;

/// <summary>
/// The bus socket: a <see cref="BusConnection"/> per client. Binds before any service starts (so a
/// path a live agent holds fails start-up at once), accepts once the silo is up, and on stop closes
/// every connection and removes the socket. Connection places: <c>broker.max_connections</c> for
/// anyone, and <c>broker.reserved_collector_connections</c> more for the collectors this agent
/// started (known by pid), so that a flood cannot keep a restarting collector out. Per-connection limits
/// (<see cref="LiveConfiguration.LiveKeys"/>) are read at each accept, so a reload applies them to the
/// connections accepted after it; the places, timeouts and the socket are fixed at start.
/// </summary>
internal sealed partial class BusSocketListener : IHostedLifecycleService, IAsyncDisposable
{
    private readonly BrokerOptions _options;
    private readonly UnixSocketServer _server;
    private readonly ILogger<BusSocketListener> _logger;
    private readonly AccessControl _access;
    private readonly SpawnedCollectors _spawned;
    private readonly GatewayStatistics _stats;
    private readonly ConnectionSlots _slots;
    private readonly ConnectionGuard _guard;

    public BusSocketListener(
        IOptionsMonitor<BrokerOptions> options,
        IOptions<SecurityOptions> security,
        BusEndpoint endpoint,
        IGrainFactory grains,
        ConnectionDirectory directory,
        Rpc.RpcRouter rpc,
        GatewayStatistics stats,
        Metrics.BusMetrics metrics,
        AccessControl access,
        TopicRoutes routes,
        SpawnedCollectors spawned,
        TimeProvider time,
        ILogger<BusSocketListener> logger,
        Durability.DurableLog? durable = null)
    {
        _options = options.CurrentValue;
        _logger = logger;
        _access = access;
        _spawned = spawned;
        _stats = stats;
        _slots = new ConnectionSlots(_options.MaxConnections, _options.ReservedCollectorConnections);
        _guard = new ConnectionGuard(TimeoutSettings.From(_options), time, logger);
        _server = new UnixSocketServer(endpoint.SocketPath, "bus",
            (client, id, stopping) => ServeAsync(client, () => new BusConnection(id, client, options.CurrentValue, grains, directory, rpc, stats, logger, metrics, access, routes, _guard, durable), stopping),
            logger,
            security.Value.ResolveSocketGroupId(),
            time,
            stats,
            Limit.BusAcceptFailed,
            ErrorFrame(ErrorCode.LimitExceeded, $"the agent is short of file descriptors (RLIMIT_NOFILE) and keeps {UnixSocketServer.DescriptorReserve} for itself; retry later"));
    }

    /// <summary>Connections holding a place now (ordinary and reserved).</summary>
    internal int Open => _slots.Open;

    /// <summary>Admits the peer (SO_PEERCRED) and the connection (a free place), then serves it.</summary>
    private async Task ServeAsync(Socket client, Func<BusConnection> connect, CancellationToken stopping)
    {
        var peer = PeerCredentials.Of(client);
        if (!_access.AdmitPeer(peer, ipc: false, out var refusal))
        {
            await UnixSocketServer.RefuseAsync(client, ErrorFrame(ErrorCode.NotAuthorized, refusal!));
            return;
        }

        var supervised = peer is { } p && _spawned.IsSpawned(p.Pid);
        var slot = _slots.TryTake(supervised);
        if (slot == SlotKind.None)
        {
            _stats.AddLimitRefusal(Limit.MaxConnections);
            if (_guard.MayWarn())
            {
                LogTooManyConnections(_logger, _options.MaxConnections, peer?.Pid ?? 0, peer?.Uid ?? uint.MaxValue, supervised ? "a collector this agent started, and every reserved place is taken too" : "not a collector this agent started");
            }

            var reserved = _options.ReservedCollectorConnections > 0
                ? $" ({_options.ReservedCollectorConnections} more are reserved for the collectors this agent starts: broker.reserved_collector_connections)"
                : string.Empty;
            await UnixSocketServer.RefuseAsync(client, ErrorFrame(ErrorCode.LimitExceeded,
                $"broker.max_connections ({_options.MaxConnections}) connections are open already{reserved}; retry later, close idle clients or raise broker.max_connections"));
            return;
        }

        try
        {
            await connect().RunAsync(stopping);
        }
        finally
        {
            _slots.Release(slot);
        }
    }

    private static byte[] ErrorFrame(ErrorCode code, string message) =>
        Framing.ToFrame(new Envelope { Error = new Error { Code = code, Message = message, Fatal = true } });

    /// <summary>The socket path in use (resolved from configuration).</summary>
    public string SocketPath => _server.SocketPath;

    public Task StartingAsync(CancellationToken cancellationToken)
    {
        _server.Bind();
        return Task.CompletedTask;
    }

    /// <summary>Accepts connections once the silo (registered earlier) has started.</summary>
    public Task StartAsync(CancellationToken cancellationToken)
    {
        LogListening(_logger, SocketPath, _options.MessageBufferSize, _options.MaxSubscribers, _options.MaxFrameSize, _options.BusyPollMicroseconds);
        LogLimits(_logger, _options.MaxConnections, _options.ReservedCollectorConnections, _options.HandshakeTimeoutSeconds, _options.FrameTimeoutSeconds, _options.IdleTimeoutSeconds);
        // Every bus connection's socket lives on the process's one reactor; set before the first is accepted.
        // Reads run on the reactor thread: a read is parsed, routed and delivered (direct sends) there,
        // with no hand-off, and nothing on that path blocks (docs/ARCHITECTURE.md, "Socket I/O").
        // It polls only after RPC frames, whose answers come back within microseconds.
        var reactor = SocketReactor.Shared;
        reactor.InlineReads = true;
        reactor.PollOnDemand = true;
        reactor.BusyPoll = TimeSpan.FromMicroseconds(_options.BusyPollMicroseconds);
        _guard.Start();
        _server.Start();
        return Task.CompletedTask;
    }

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _server.StopAsync(cancellationToken);
        _guard.Dispose();
    }

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        await _server.DisposeAsync();
        _guard.Dispose();
    }

    [LoggerMessage(EventId = 2104, Level = LogLevel.Warning, Message = "Refused a bus connection from pid {Pid} uid {Uid}: broker.max_connections ({Max}) are open ({Who})")]
    private static partial void LogTooManyConnections(ILogger logger, int max, int pid, uint uid, string who);

    [LoggerMessage(EventId = 2100, Level = LogLevel.Information, Message = "Event bus listening on {SocketPath} (message_buffer_size {BufferSize}, max_subscribers {MaxSubscribers}, max_frame_size {MaxFrameSize}, busy_poll_microseconds {BusyPollMicroseconds})")]
    private static partial void LogListening(ILogger logger, string socketPath, int bufferSize, int maxSubscribers, int maxFrameSize, int busyPollMicroseconds);

    [LoggerMessage(EventId = 2107, Level = LogLevel.Information, Message = "Bus connection limits: max_connections {MaxConnections} (+{Reserved} reserved for supervised collectors), handshake_timeout_seconds {Handshake}, frame_timeout_seconds {Frame}, idle_timeout_seconds {Idle} (0: off)")]
    private static partial void LogLimits(ILogger logger, int maxConnections, int reserved, double handshake, double frame, double idle);
}
