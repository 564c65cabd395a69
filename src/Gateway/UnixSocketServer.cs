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
/// accepting has worked for a while again, with the count and the duration.
/// </summary>
internal sealed partial class UnixSocketServer(
    string path,
    string what,
    Func<Socket, long, CancellationToken, Task> serve,
    ILogger logger,
    uint? socketGroup = null,
    TimeProvider? time = null,
    GatewayStatistics? stats = null,
    Limit acceptFailed = Limit.BusAcceptFailed,
    byte[]? lowDescriptorsRefusal = null) : IAsyncDisposable
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

    /// <summary>Starts accepting clients (after taking the process's <see cref="DescriptorSpare"/>).</summary>
    public void Start()
    {
        DescriptorSpare.TryHold();
        _acceptLoop = Task.Run(AcceptLoopAsync, CancellationToken.None);
    }

    /// <summary>Clients being served now.</summary>
    public int Serving => _clients.Count;

    private async Task AcceptLoopAsync()
    {
        var listener = _listener!;
        var failing = new Episode(new AcceptBackoff(_time));
        var low = new Episode(new AcceptBackoff(_time));
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
                var delay = failing.Backoff.Failed(out var first);
                var reason = first ? Describe(ex) : string.Empty;

                // Out of descriptors, the runtime aborts at its next thread or assembly load: give it the
                // spare (after Describe's probe). The next accept then works, inside the reserve, and is
                // refused with its reason below.
                var released = ex.SocketErrorCode == SocketError.TooManyOpenSockets ? DescriptorSpare.Release() : 0;
                if (first)
                {
                    failing.Reason = reason;
                    LogAcceptFailing(logger, what, failing.Reason, _clients.Count, LimitText(), released,
                        AcceptBackoff.First.TotalMilliseconds, AcceptBackoff.Max.TotalMilliseconds);
                    failing.Watcher = WatchEndAsync(failing, "accept");
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

            if (failing.Backoff.InEpisode)
            {
                failing.Backoff.Succeeded();
            }

            // The kernel gives the lowest free descriptor: when even that one is this close to the limit,
            // fewer than DescriptorReserve are left for the agent itself (its threads, assembly loads, files;
            // the runtime aborts when it cannot create a thread). Refuse rather than take them.
            // After an EMFILE episode gave the runtime the spare, connections are refused until it is taken back.
            if (IsShortOfDescriptors(client, out var fd, out var soft) || (DescriptorSpare.Released && !DescriptorSpare.TryHold()))
            {
                stats?.AddLimitRefusal(Limit.DescriptorReserve);
                low.Backoff.Failed(out var first);
                if (first)
                {
                    low.Reason = $"descriptor {fd} of RLIMIT_NOFILE {soft}";
                    LogDescriptorsLow(logger, what, fd, soft, DescriptorReserve, _clients.Count);
                    low.Watcher = WatchEndAsync(low, "reserve");
                }

                RefuseNow(client, lowDescriptorsRefusal);
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

    /// <summary>Descriptors the accept loops leave free for the rest of the agent.</summary>
    public const int DescriptorReserve = 64;

    /// <summary>True when <paramref name="client"/>'s descriptor is within <see cref="DescriptorReserve"/> of the soft RLIMIT_NOFILE.</summary>
    internal static bool IsShortOfDescriptors(Socket client, out long fd, out ulong soft)
    {
        fd = client.Handle.ToInt64();
        soft = DaemonEye.Hosting.Posix.OpenFileLimit()?.Soft ?? ulong.MaxValue;
        return soft != ulong.MaxValue && (ulong)fd + DescriptorReserve >= soft;
    }

    /// <summary>Sends a refused client its one frame if the socket takes it at once, and closes it: no waiting, no task.</summary>
    private static void RefuseNow(Socket client, byte[]? frame)
    {
        using (client)
        {
            try
            {
                if (frame is not null)
                {
                    client.Blocking = false;
                    client.Send(frame, SocketFlags.None, out _);
                }

                client.Shutdown(SocketShutdown.Both);
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                // Gone already: closing is all there is.
            }
        }
    }

    private string LimitText() => DaemonEye.Hosting.Posix.OpenFileLimit() is { } l ? l.Soft.ToString(System.Globalization.CultureInfo.InvariantCulture) : "unknown";

    /// <summary>An episode of failing or refused accepts: its clock and the reason logged when it began.</summary>
    private sealed class Episode(AcceptBackoff backoff)
    {
        public AcceptBackoff Backoff { get; } = backoff;

        public string Reason { get; set; } = "unknown";

        public Task? Watcher { get; set; }
    }

    /// <summary>
    /// From an episode's first failure: looks every <see cref="AcceptBackoff.Quiet"/> whether nothing has
    /// failed for that long, and then logs the episode's end once. Near the limit, accepts alternate (a
    /// descriptor freed, taken, the next accept fails): such flaps stay one episode.
    /// </summary>
    private async Task WatchEndAsync(Episode episode, string kind)
    {
        while (episode.Backoff.InEpisode)
        {
            try
            {
                await Task.Delay(AcceptBackoff.Quiet, _time, _stopping.Token);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            ReportIfEnded(episode, kind);
        }
    }

    private void ReportIfEnded(Episode episode, string kind)
    {
        if (episode.Backoff.TryEnd(out var failures, out var duration))
        {
            if (kind == "accept")
            {
                LogAcceptRecovered(logger, what, failures, duration.TotalSeconds, episode.Reason);
            }
            else
            {
                LogDescriptorsRecovered(logger, what, failures, duration.TotalSeconds, DescriptorReserve);
            }
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

    [LoggerMessage(EventId = 2101, Level = LogLevel.Warning, Message = "Accepting {What} connections fails: {Reason}; {Open} {What} connections open, RLIMIT_NOFILE {Limit}; {Released} spare descriptors given back to the runtime; retrying with a backoff from {FirstMs} to {MaxMs} ms until it works (logged again then, with the count)")]
    private static partial void LogAcceptFailing(ILogger logger, string what, string reason, int open, string limit, int released, double firstMs, double maxMs);

    [LoggerMessage(EventId = 2105, Level = LogLevel.Warning, Message = "Accepting {What} connections works again: {Failures} failed accepts over {Seconds:0.###} s ({Reason})")]
    private static partial void LogAcceptRecovered(ILogger logger, string what, long failures, double seconds, string reason);

    [LoggerMessage(EventId = 2108, Level = LogLevel.Warning, Message = "Refusing {What} connections: the agent is short of file descriptors (the next free one is {Fd} of RLIMIT_NOFILE {Limit}; {Reserve} are kept for the agent itself); {Open} {What} connections open. Logged again when it ends, with the count")]
    private static partial void LogDescriptorsLow(ILogger logger, string what, long fd, ulong limit, int reserve, int open);

    [LoggerMessage(EventId = 2109, Level = LogLevel.Warning, Message = "Accepting {What} connections again: {Refused} refused over {Seconds:0.###} s to keep {Reserve} file descriptors free")]
    private static partial void LogDescriptorsRecovered(ILogger logger, string what, long refused, double seconds, int reserve);

    [LoggerMessage(EventId = 2102, Level = LogLevel.Warning, Message = "{Count} {What} connections did not close within {Seconds} s of shutdown")]
    private static partial void LogSlowShutdown(ILogger logger, int count, string what, double seconds);

    [LoggerMessage(EventId = 2103, Level = LogLevel.Information, Message = "{What} socket stopped; removed {SocketPath}")]
    private static partial void LogStopped(ILogger logger, string what, string socketPath);
}

/// <summary>
/// The accept loop's reaction to failing accepts: the first retry after <see cref="First"/>, each
/// further one after twice the delay before, up to <see cref="Max"/>. An episode runs from the first
/// failure until no accept has failed for <see cref="Quiet"/>: accepts that work in between do not end
/// it (near the limit, a freed descriptor is taken by the next accept and the one after fails), they
/// only start the delays from <see cref="First"/> again. Thread-safe: the loop and its delayed end check use it.
/// </summary>
internal sealed class AcceptBackoff(TimeProvider time)
{
    public static readonly TimeSpan First = TimeSpan.FromMilliseconds(5);
    public static readonly TimeSpan Max = TimeSpan.FromSeconds(1);

    /// <summary>How long accepting must go without a failure for the episode to end.</summary>
    public static readonly TimeSpan Quiet = TimeSpan.FromSeconds(2);

    private readonly Lock _gate = new();
    private long _episodeStart;
    private long _lastFailure;
    private long _failures;
    private TimeSpan _next = First;

    /// <summary>True from the first failure until <see cref="TryEnd"/> ends the episode.</summary>
    public bool InEpisode
    {
        get
        {
            lock (_gate)
            {
                return _failures > 0;
            }
        }
    }

    /// <summary>An accept failed: how long to wait before the next; <paramref name="first"/> when this began an episode.</summary>
    public TimeSpan Failed(out bool first)
    {
        var now = time.GetTimestamp();
        lock (_gate)
        {
            first = _failures == 0;
            if (first)
            {
                _episodeStart = now;
                _next = First;
            }

            _failures++;
            _lastFailure = now;
            var delay = _next;
            _next = _next * 2 < Max ? _next * 2 : Max;
            return delay;
        }
    }

    /// <summary>An accept worked: a descriptor was free, so the next failure is retried soon again (the episode goes on).</summary>
    public void Succeeded()
    {
        lock (_gate)
        {
            _next = First;
        }
    }

    /// <summary>
    /// Ends the episode when no accept has failed for <see cref="Quiet"/>: true once, with its failures
    /// and its duration (from the first failure to the last).
    /// </summary>
    public bool TryEnd(out long failures, out TimeSpan duration)
    {
        var now = time.GetTimestamp();
        lock (_gate)
        {
            failures = _failures;
            duration = TimeSpan.Zero;
            if (_failures == 0 || time.GetElapsedTime(_lastFailure, now) < Quiet)
            {
                return false;
            }

            duration = time.GetElapsedTime(_episodeStart, _lastFailure);
            _failures = 0;
            return true;
        }
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
