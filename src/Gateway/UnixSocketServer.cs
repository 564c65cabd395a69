using System.Collections.Concurrent;
using System.Net.Sockets;
using DaemonEye.Gateway.Security;
using Microsoft.Extensions.Logging;

namespace DaemonEye.Gateway;

/// <summary>
/// One listening Unix socket of the agent (the bus or the IPC socket): bound with
/// <see cref="UnixSocketBinder"/>, an accept loop that runs <c>serve</c> per client, and a stop
/// that ends the loop, waits (bounded) for the clients and removes the socket file. An accept that
/// fails (EMFILE/ENFILE when the process is out of file descriptors, ENOBUFS, ENOMEM) is not retried
/// at once: the loop backs off (<see cref="AcceptBackoff"/>), counts each failure
/// (<paramref name="acceptFailed"/>), and logs the episode once when it begins and once when
/// accepting works again, with the count and the duration.
/// </summary>
internal sealed partial class UnixSocketServer(
    string path,
    string what,
    Func<Socket, long, CancellationToken, Task> serve,
    ILogger logger,
    uint? socketGroup = null,
    TimeProvider? time = null,
    GatewayStatistics? stats = null,
    Limit acceptFailed = Limit.BusAcceptFailed) : IAsyncDisposable
{
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(5);
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<long, Task> _clients = new();
    private readonly TimeProvider _time = time ?? TimeProvider.System;
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

    /// <summary>Clients being served now.</summary>
    public int Serving => _clients.Count;

    private async Task AcceptLoopAsync()
    {
        var listener = _listener!;
        var backoff = new AcceptBackoff(_time);
        string? episodeReason = null;
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
            catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ConnectionAborted or SocketError.ConnectionReset)
            {
                // That client gave up before it was accepted; the next one is unaffected.
                continue;
            }
            catch (SocketException ex)
            {
                // EMFILE/ENFILE (out of descriptors), ENOBUFS, ENOMEM: retrying at once would spin on
                // the same error (the connection stays queued and the socket readable) and log each time.
                stats?.AddLimitRefusal(acceptFailed);
                var delay = backoff.Failed(out var first);
                if (first)
                {
                    episodeReason = Describe(ex);
                    var limit = DaemonEye.Hosting.Posix.OpenFileLimit();
                    LogAcceptFailing(logger, what, episodeReason, _clients.Count, limit is { } l ? l.Soft.ToString(System.Globalization.CultureInfo.InvariantCulture) : "unknown",
                        AcceptBackoff.First.TotalMilliseconds, AcceptBackoff.Max.TotalMilliseconds);
                }

                try
                {
                    await Task.Delay(delay, _time, _stopping.Token);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                continue;
            }

            if (backoff.Succeeded(out var failures, out var duration))
            {
                LogAcceptRecovered(logger, what, failures, duration.TotalSeconds, episodeReason ?? "unknown");
                episodeReason = null;
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

    /// <summary>The error and its errno: "out of file descriptors (EMFILE: ...)".</summary>
    private static string Describe(SocketException ex) => ex.SocketErrorCode switch
    {
        // The runtime maps EMFILE and ENFILE to one SocketError (and its message says "in system" for both).
        SocketError.TooManyOpenSockets => DaemonEye.Hosting.Posix.ProbeDescriptor() switch
        {
            DaemonEye.Hosting.Posix.EMFILE => "out of file descriptors (EMFILE: the agent has every descriptor its RLIMIT_NOFILE allows open)",
            DaemonEye.Hosting.Posix.ENFILE => "out of file descriptors (ENFILE: the system's file table is full, fs.file-max)",
            _ => "out of file descriptors (EMFILE or ENFILE; one was free again a moment later)",
        },
        SocketError.NoBufferSpaceAvailable => $"{ex.Message} (ENOBUFS/ENOMEM: out of kernel memory)",
        _ => $"{ex.Message} ({ex.SocketErrorCode})",
    };

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

    [LoggerMessage(EventId = 2101, Level = LogLevel.Warning, Message = "Accepting {What} connections fails: {Reason}; {Open} {What} connections open, RLIMIT_NOFILE {Limit}; retrying with a backoff from {FirstMs} to {MaxMs} ms until it works (logged again then, with the count)")]
    private static partial void LogAcceptFailing(ILogger logger, string what, string reason, int open, string limit, double firstMs, double maxMs);

    [LoggerMessage(EventId = 2105, Level = LogLevel.Warning, Message = "Accepting {What} connections works again after {Failures} failed accepts over {Seconds:0.###} s ({Reason})")]
    private static partial void LogAcceptRecovered(ILogger logger, string what, long failures, double seconds, string reason);

    [LoggerMessage(EventId = 2102, Level = LogLevel.Warning, Message = "{Count} {What} connections did not close within {Seconds} s of shutdown")]
    private static partial void LogSlowShutdown(ILogger logger, int count, string what, double seconds);

    [LoggerMessage(EventId = 2103, Level = LogLevel.Information, Message = "{What} socket stopped; removed {SocketPath}")]
    private static partial void LogStopped(ILogger logger, string what, string socketPath);
}

/// <summary>
/// The accept loop's reaction to failing accepts: the first retry after <see cref="First"/>, each
/// further one after twice the delay before, up to <see cref="Max"/>; an episode runs from the first
/// failure to the next accept that works. Used by one loop (not thread-safe).
/// </summary>
internal sealed class AcceptBackoff(TimeProvider time)
{
    public static readonly TimeSpan First = TimeSpan.FromMilliseconds(5);
    public static readonly TimeSpan Max = TimeSpan.FromSeconds(1);
    private long _episodeStart;
    private long _failures;
    private TimeSpan _next = First;

    /// <summary>Failures in the episode so far (0: accepting works).</summary>
    public long Failures => _failures;

    /// <summary>An accept failed: how long to wait before the next; <paramref name="first"/> when this began an episode.</summary>
    public TimeSpan Failed(out bool first)
    {
        first = _failures == 0;
        if (first)
        {
            _episodeStart = time.GetTimestamp();
            _next = First;
        }

        _failures++;
        var delay = _next;
        _next = _next * 2 < Max ? _next * 2 : Max;
        return delay;
    }

    /// <summary>An accept worked: true when it ended an episode, with the episode's failures and duration.</summary>
    public bool Succeeded(out long failures, out TimeSpan duration)
    {
        failures = _failures;
        duration = failures == 0 ? TimeSpan.Zero : time.GetElapsedTime(_episodeStart);
        _failures = 0;
        return failures > 0;
    }
}

/// <summary>
/// The connection places of a listener: <c>max</c> for everyone and <c>reserved</c> more that only
/// privileged peers (the collectors the agent started) may take; a privileged peer takes a reserved
/// place first, then an ordinary one. Thread-safe.
/// </summary>
internal sealed class ConnectionSlots(int max, int reserved)
{
    private int _open;
    private int _reservedOpen;

    public int Max => max;

    public int Reserved => reserved;

    /// <summary>Connections holding a place now.</summary>
    public int Open => Volatile.Read(ref _open) + Volatile.Read(ref _reservedOpen);

    /// <summary>Takes a place; <see cref="SlotKind.None"/> when none is free for this peer.</summary>
    public SlotKind TryTake(bool privileged)
    {
        if (privileged && TryIncrement(ref _reservedOpen, reserved))
        {
            return SlotKind.Reserved;
        }

        return TryIncrement(ref _open, max) ? SlotKind.Ordinary : SlotKind.None;
    }

    public void Release(SlotKind kind)
    {
        switch (kind)
        {
            case SlotKind.Ordinary:
                Interlocked.Decrement(ref _open);
                break;
            case SlotKind.Reserved:
                Interlocked.Decrement(ref _reservedOpen);
                break;
        }
    }

    private static bool TryIncrement(ref int counter, int limit)
    {
        while (true)
        {
            var current = Volatile.Read(ref counter);
            if (current >= limit)
            {
                return false;
            }

            if (Interlocked.CompareExchange(ref counter, current + 1, current) == current)
            {
                return true;
            }
        }
    }
}

/// <summary>Which place a connection holds.</summary>
internal enum SlotKind
{
    None,
    Ordinary,
    Reserved,
}
