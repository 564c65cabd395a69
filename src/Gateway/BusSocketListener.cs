using System.Collections.Concurrent;
using System.Net.Sockets;
using DaemonEye.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DaemonEye.Gateway;

/// <summary>
/// Listens on the bus's Unix-domain socket and runs a <see cref="BusConnection"/> per client.
/// Start-up fails with a clear message when a live agent already holds the path; a stale socket
/// file is removed. On stop it closes every connection and removes its socket.
/// </summary>
internal sealed partial class BusSocketListener(
    IOptions<BrokerOptions> options,
    BusEndpoint endpoint,
    IGrainFactory grains,
    ConnectionDirectory directory,
    GatewayStatistics stats,
    ILogger<BusSocketListener> logger) : IHostedLifecycleService, IAsyncDisposable
{
    private readonly BrokerOptions _options = options.Value;
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<long, Task> _connections = new();
    private Socket? _listener;
    private Task? _acceptLoop;
    private long _lastConnectionId;

    /// <summary>The socket path in use (resolved from configuration).</summary>
    public string SocketPath { get; } = endpoint.SocketPath;

    /// <summary>Binds the socket before any service starts, so a taken path fails start-up at once.</summary>
    public Task StartingAsync(CancellationToken cancellationToken)
    {
        _listener = UnixSocketBinder.Bind(SocketPath, "bus");
        return Task.CompletedTask;
    }

    /// <summary>Accepts connections once the silo (registered earlier) has started.</summary>
    public Task StartAsync(CancellationToken cancellationToken)
    {
        LogListening(logger, SocketPath, _options.MessageBufferSize, _options.MaxSubscribers, _options.MaxFrameSize);
        _acceptLoop = Task.Run(AcceptLoopAsync, CancellationToken.None);
        return Task.CompletedTask;
    }

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    private async Task AcceptLoopAsync()
    {
        var listener = _listener!;
        while (!_stopping.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(_stopping.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException || _stopping.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException ex)
            {
                LogAcceptFailed(logger, ex.Message);
                continue;
            }

            var id = Interlocked.Increment(ref _lastConnectionId);
            var connection = new BusConnection(id, client, _options, grains, directory, stats, logger);
            _connections[id] = Task.Run(async () =>
            {
                try
                {
                    await connection.RunAsync(_stopping.Token);
                }
                finally
                {
                    _connections.TryRemove(id, out _);
                }
            });
        }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_listener is null)
        {
            return;
        }

        await _stopping.CancelAsync();
        _listener.Dispose();
        if (_acceptLoop is not null)
        {
            await _acceptLoop;
        }

        try
        {
            await Task.WhenAll(_connections.Values).WaitAsync(TimeSpan.FromSeconds(5), cancellationToken);
        }
        catch (Exception ex) when (ex is TimeoutException or OperationCanceledException)
        {
            LogSlowShutdown(logger, _connections.Count);
        }

        UnixSocketBinder.Remove(SocketPath);
        LogStopped(logger, SocketPath);
        _listener = null;
    }

    public async ValueTask DisposeAsync()
    {
        if (_listener is not null)
        {
            await StopAsync(CancellationToken.None);
        }

        _stopping.Dispose();
    }

    [LoggerMessage(EventId = 2100, Level = LogLevel.Information, Message = "Event bus listening on {SocketPath} (message_buffer_size {BufferSize}, max_subscribers {MaxSubscribers}, max_frame_size {MaxFrameSize})")]
    private static partial void LogListening(ILogger logger, string socketPath, int bufferSize, int maxSubscribers, int maxFrameSize);

    [LoggerMessage(EventId = 2101, Level = LogLevel.Warning, Message = "Accepting a bus connection failed: {Reason}")]
    private static partial void LogAcceptFailed(ILogger logger, string reason);

    [LoggerMessage(EventId = 2102, Level = LogLevel.Warning, Message = "{Count} bus connections did not close within 5 s of shutdown")]
    private static partial void LogSlowShutdown(ILogger logger, int count);

    [LoggerMessage(EventId = 2103, Level = LogLevel.Information, Message = "Event bus stopped; removed {SocketPath}")]
    private static partial void LogStopped(ILogger logger, string socketPath);
}
