using System.Collections.Concurrent;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace DaemonEye.Gateway;

/// <summary>
/// One listening Unix socket of the agent (the bus or the IPC socket): bound with
/// <see cref="UnixSocketBinder"/>, an accept loop that runs <c>serve</c> per client, and a stop
/// that ends the loop, waits (bounded) for the clients and removes the socket file.
/// </summary>
internal sealed partial class UnixSocketServer(string path, string what, Func<Socket, long, CancellationToken, Task> serve, ILogger logger, uint? socketGroup = null) : IAsyncDisposable
{
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(5);
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<long, Task> _clients = new();
    private Socket? _listener;
    private Task? _acceptLoop;
    private long _lastId;

    public string SocketPath => path;

    /// <summary>Binds (fails at once when the path is taken); accepts nothing yet.</summary>
    public void Bind() => _listener = UnixSocketBinder.Bind(path, what, socketGroup);

    /// <summary>Sends a refused client one last frame (bounded wait: it may not read) and closes it.</summary>
    public static async Task RefuseAsync(Socket client, byte[] frame)
    {
        using (client)
        {
            try
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                await client.SendAsync(frame, SocketFlags.None, timeout.Token);
                client.Shutdown(SocketShutdown.Both);
            }
            catch (Exception ex) when (ex is SocketException or OperationCanceledException or ObjectDisposedException)
            {
                // The peer is gone or does not read; closing is all that is left.
            }
        }
    }

    /// <summary>Starts accepting clients.</summary>
    public void Start() => _acceptLoop = Task.Run(AcceptLoopAsync, CancellationToken.None);

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
                LogAcceptFailed(logger, what, ex.Message);
                continue;
            }

            var id = Interlocked.Increment(ref _lastId);
            _clients[id] = Task.Run(async () =>
            {
                try
                {
                    await serve(client, id, _stopping.Token);
                }
                finally
                {
                    _clients.TryRemove(id, out _);
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
            await Task.WhenAll(_clients.Values).WaitAsync(DrainTimeout, cancellationToken);
        }
        catch (Exception ex) when (ex is TimeoutException or OperationCanceledException)
        {
            LogSlowShutdown(logger, _clients.Count, what, DrainTimeout.TotalSeconds);
        }

        UnixSocketBinder.Remove(path);
        LogStopped(logger, what, path);
        _listener = null;
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync(CancellationToken.None);
        _stopping.Dispose();
    }

    [LoggerMessage(EventId = 2101, Level = LogLevel.Warning, Message = "Accepting a {What} connection failed: {Reason}")]
    private static partial void LogAcceptFailed(ILogger logger, string what, string reason);

    [LoggerMessage(EventId = 2102, Level = LogLevel.Warning, Message = "{Count} {What} connections did not close within {Seconds} s of shutdown")]
    private static partial void LogSlowShutdown(ILogger logger, int count, string what, double seconds);

    [LoggerMessage(EventId = 2103, Level = LogLevel.Information, Message = "{What} socket stopped; removed {SocketPath}")]
    private static partial void LogStopped(ILogger logger, string what, string socketPath);
}
