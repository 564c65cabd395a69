using DaemonEye.Configuration;
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

    public BusSocketListener(
        IOptions<BrokerOptions> options,
        BusEndpoint endpoint,
        IGrainFactory grains,
        ConnectionDirectory directory,
        Rpc.RpcRouter rpc,
        GatewayStatistics stats,
        Metrics.BusMetrics metrics,
        ILogger<BusSocketListener> logger)
    {
        _options = options.Value;
        _logger = logger;
        _server = new UnixSocketServer(endpoint.SocketPath, "bus",
            (client, id, stopping) => new BusConnection(id, client, _options, grains, directory, rpc, stats, logger, metrics).RunAsync(stopping),
            logger);
    }

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
        LogListening(_logger, SocketPath, _options.MessageBufferSize, _options.MaxSubscribers, _options.MaxFrameSize);
        _server.Start();
        return Task.CompletedTask;
    }

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => _server.StopAsync(cancellationToken);

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public ValueTask DisposeAsync() => _server.DisposeAsync();

    [LoggerMessage(EventId = 2100, Level = LogLevel.Information, Message = "Event bus listening on {SocketPath} (message_buffer_size {BufferSize}, max_subscribers {MaxSubscribers}, max_frame_size {MaxFrameSize})")]
    private static partial void LogListening(ILogger logger, string socketPath, int bufferSize, int maxSubscribers, int maxFrameSize);
}
