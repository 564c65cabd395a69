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
/// every connection and removes the socket.
/// </summary>
internal sealed partial class BusSocketListener : IHostedLifecycleService, IAsyncDisposable
{
    private readonly BrokerOptions _options;
    private readonly UnixSocketServer _server;
    private readonly ILogger<BusSocketListener> _logger;
    private readonly AccessControl _access;
    private readonly GatewayStatistics _stats;
    private int _open;

    public BusSocketListener(
        IOptions<BrokerOptions> options,
        IOptions<SecurityOptions> security,
        BusEndpoint endpoint,
        IGrainFactory grains,
        ConnectionDirectory directory,
        Rpc.RpcRouter rpc,
        GatewayStatistics stats,
        Metrics.BusMetrics metrics,
        AccessControl access,
        TopicRoutes routes,
        ILogger<BusSocketListener> logger)
    {
        _options = options.Value;
        _logger = logger;
        _access = access;
        _stats = stats;
        _server = new UnixSocketServer(endpoint.SocketPath, "bus",
            (client, id, stopping) => ServeAsync(client, () => new BusConnection(id, client, _options, grains, directory, rpc, stats, logger, metrics, access, routes), stopping),
            logger,
            security.Value.ResolveSocketGroupId());
    }

    /// <summary>Admits the peer (SO_PEERCRED) and the connection (broker.max_connections), then serves it.</summary>
    private async Task ServeAsync(Socket client, Func<BusConnection> connect, CancellationToken stopping)
    {
        if (!_access.AdmitPeer(PeerCredentials.Of(client), ipc: false, out var refusal))
        {
            await UnixSocketServer.RefuseAsync(client, ErrorFrame(ErrorCode.NotAuthorized, refusal!));
            return;
        }

        if (Interlocked.Increment(ref _open) > _options.MaxConnections)
        {
            Interlocked.Decrement(ref _open);
            _stats.AddLimitRefusal(Limit.MaxConnections);
            LogTooManyConnections(_logger, _options.MaxConnections);
            await UnixSocketServer.RefuseAsync(client, ErrorFrame(ErrorCode.LimitExceeded,
                $"broker.max_connections ({_options.MaxConnections}) connections are open already; retry later, close idle clients or raise broker.max_connections"));
            return;
        }

        try
        {
            await connect().RunAsync(stopping);
        }
        finally
        {
            Interlocked.Decrement(ref _open);
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
        // Every bus connection's socket lives on the process's one reactor; set before the first is accepted.
        // Reads run on the reactor thread: a read is parsed, routed and delivered (direct sends) there,
        // with no hand-off, and nothing on that path blocks (docs/ARCHITECTURE.md, "Socket I/O").
        // It polls only after RPC frames, whose answers come back within microseconds.
        var reactor = SocketReactor.Shared;
        reactor.InlineReads = true;
        reactor.PollOnDemand = true;
        reactor.BusyPoll = TimeSpan.FromMicroseconds(_options.BusyPollMicroseconds);
        _server.Start();
        return Task.CompletedTask;
    }

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => _server.StopAsync(cancellationToken);

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public ValueTask DisposeAsync() => _server.DisposeAsync();

    [LoggerMessage(EventId = 2104, Level = LogLevel.Warning, Message = "Refused a bus connection: broker.max_connections ({Max}) are open")]
    private static partial void LogTooManyConnections(ILogger logger, int max);

    [LoggerMessage(EventId = 2100, Level = LogLevel.Information, Message = "Event bus listening on {SocketPath} (message_buffer_size {BufferSize}, max_subscribers {MaxSubscribers}, max_frame_size {MaxFrameSize}, busy_poll_microseconds {BusyPollMicroseconds})")]
    private static partial void LogListening(ILogger logger, string socketPath, int bufferSize, int maxSubscribers, int maxFrameSize, int busyPollMicroseconds);
}
