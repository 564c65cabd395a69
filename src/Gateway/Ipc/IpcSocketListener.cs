using System.IO.Pipelines;
using System.Net.Sockets;
using DaemonEye.Configuration;
using DaemonEye.Gateway.Rpc;
using DaemonEye.Grains;
using DaemonEye.Logging;
using DaemonEye.Protocol;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.V1;
using Google.Protobuf;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DaemonEye.Gateway.Ipc;

/// <summary>Where the IPC server listens, resolved from configuration.</summary>
public sealed record IpcEndpoint(string SocketPath);

/// <summary>
/// The product document's IPC server: the CLI's control socket. Protobuf IpcRequest frames in,
/// one IpcResponse per request out (same request_id), requests of one connection served in order.
/// Bound with the same rules as the bus socket (directory 0700, socket 0600, stale file removed,
/// a live agent refused). Each request is checked against the caller's IPC role before it is served
/// (<see cref="Security.AccessControl.AuthorizeIpc"/>): readers read, only operators operate.
/// </summary>
internal sealed partial class IpcSocketListener(
    IpcEndpoint endpoint,
    BusEndpoint bus,
    IOptions<BrokerOptions> broker,
    IOptions<SecurityOptions> security,
    Security.AccessControl access,
    IAgentControl control,
    RpcRouter rpc,
    GatewayStatistics stats,
    IGrainFactory grains,
    TimeProvider time,
    IEnumerable<IIpcRequestHandler> extensions,
    ILogger<IpcSocketListener> logger,
    Metrics.AgentObservability observability,
    IOptions<IpcOptions> ipc) : IHostedLifecycleService, IAsyncDisposable
{
    private readonly Dictionary<IpcRequest.BodyOneofCase, IIpcRequestHandler> _extensions =
        extensions.SelectMany(h => h.Handles.Select(c => (Case: c, Handler: h))).ToDictionary(x => x.Case, x => x.Handler);

    private readonly DateTimeOffset _started = time.GetUtcNow();
    private readonly ConnectionSlots _slots = new(ipc.Value.MaxConnections, 0);
    private readonly LogRateLimiter _warnings = new(time, ConnectionGuard.WarningsPerWindow, ConnectionGuard.WarningWindow);
    private UnixSocketServer? _server;

    public Task StartingAsync(CancellationToken cancellationToken)
    {
        _server = new UnixSocketServer(endpoint.SocketPath, "IPC", ServeAsync, logger, security.Value.ResolveSocketGroupId(), time, stats, Security.Limit.IpcAcceptFailed,
            Framing.ToFrame(new IpcResponse { Error = Error(RpcErrorKind.ResourceExhausted, $"the agent is short of file descriptors (RLIMIT_NOFILE) and keeps {UnixSocketServer.DescriptorReserve} for itself; retry later") }));
        _server.Bind();
        return Task.CompletedTask;
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        LogListening(logger, endpoint.SocketPath);
        _server?.Start();
        return Task.CompletedTask;
    }

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    private async Task ServeAsync(Socket socket, long id, CancellationToken cancellationToken)
    {
        var peer = PeerCredentials.Of(socket);
        if (!access.AdmitPeer(peer, ipc: true, out var refusal))
        {
            // No handshake on IPC: the refusal is an unsolicited response (request_id 0) before the close.
            await UnixSocketServer.RefuseAsync(socket, Framing.ToFrame(new IpcResponse { Error = Error(RpcErrorKind.NotAuthorized, refusal!) }));
            return;
        }

        var slot = _slots.TryTake(privileged: false);
        if (slot == SlotKind.None)
        {
            stats.AddLimitRefusal(Security.Limit.IpcMaxConnections);
            if (MayWarn())
            {
                LogTooManyConnections(logger, ipc.Value.MaxConnections, peer?.Pid ?? 0, peer?.Uid ?? uint.MaxValue);
            }

            await UnixSocketServer.RefuseAsync(socket, Framing.ToFrame(new IpcResponse
            {
                Error = Error(RpcErrorKind.ResourceExhausted, $"ipc.max_connections ({ipc.Value.MaxConnections}) IPC connections are open already; retry later or raise ipc.max_connections"),
            }));
            return;
        }

        try
        {
            await ServeAdmittedAsync(socket, peer, id, cancellationToken);
        }
        finally
        {
            _slots.Release(slot);
        }
    }

    /// <summary>
    /// Serves requests in order. Between requests (from the accept, and from each answer) a complete
    /// request must arrive within <c>ipc.idle_timeout_seconds</c>: a client that sends nothing, or a
    /// request a byte at a time, is told so and closed.
    /// </summary>
    private async Task ServeAdmittedAsync(Socket socket, PeerCredentials? peer, long id, CancellationToken cancellationToken)
    {
        var idleTimeout = ipc.Value.IdleTimeout;
        using var idle = new CancellationTokenSource(Timeout.InfiniteTimeSpan, time);
        using var reading = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, idle.Token);

        // The role is the peer's for the connection's life: SO_PEERCRED is fixed at connect.
        var caller = access.IpcCallerFor(peer, id);
        using var owned = socket;
        await using var stream = new NetworkStream(socket, ownsSocket: false);
        var input = PipeReader.Create(stream);
        var output = PipeWriter.Create(stream);
        try
        {
            while (true)
            {
                if (idleTimeout > TimeSpan.Zero)
                {
                    idle.CancelAfter(idleTimeout);
                }

                ReadResult result;
                try
                {
                    result = await input.ReadAsync(reading.Token);
                }
                catch (OperationCanceledException) when (idle.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
                {
                    await IdleTimedOutAsync(output, peer, idleTimeout);
                    return;
                }

                var buffer = result.Buffer;
                while (true)
                {
                    var status = Framing.TryReadFrame(ref buffer, broker.Value.MaxFrameSize, out var frame, out var declared);
                    if (status == FrameStatus.Incomplete)
                    {
                        break;
                    }

                    if (status == FrameStatus.TooLarge)
                    {
                        await ReplyAsync(output, new IpcResponse { Error = Error(RpcErrorKind.InvalidOperation, $"frame length {declared} exceeds the maximum frame size {broker.Value.MaxFrameSize}") }, cancellationToken);
                        return;
                    }

                    IpcRequest request;
                    try
                    {
                        request = IpcRequest.Parser.ParseFrom(frame);
                    }
                    catch (InvalidProtocolBufferException ex)
                    {
                        await ReplyAsync(output, new IpcResponse { Error = Error(RpcErrorKind.InvalidOperation, $"not a valid IpcRequest: {ex.Message}") }, cancellationToken);
                        return;
                    }

                    // The idle clock stops while the request is served (a collector stop may take a minute) and restarts at the answer.
                    idle.CancelAfter(Timeout.InfiniteTimeSpan);
                    var correlationId = request.Correlation?.CorrelationId ?? string.Empty;
                    LogRequest(logger, request.BodyCase, correlationId, peer?.Pid ?? 0, peer?.Uid ?? uint.MaxValue);
                    IpcResponse response;
                    if (access.AuthorizeIpc(caller, request) is { } denied)
                    {
                        response = new IpcResponse { Error = Error(RpcErrorKind.NotAuthorized, denied) };
                    }
                    else
                    {
                        // Everything logged while serving the request (the supervisor's stop, its RPCs) carries its correlation id.
                        using (logger.BeginScope(new Dictionary<string, object> { ["CorrelationId"] = correlationId, ["Operation"] = request.BodyCase.ToString() }))
                        {
                            response = await HandleAsync(request, cancellationToken);
                        }
                    }

                    response.RequestId = request.RequestId;
                    await ReplyAsync(output, response, cancellationToken);
                    if (idleTimeout > TimeSpan.Zero)
                    {
                        idle.CancelAfter(idleTimeout);
                    }
                }

                input.AdvanceTo(buffer.Start, buffer.End);
                if (result.IsCompleted)
                {
                    return;
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or SocketException)
        {
            // Client gone or agent stopping.
        }
        finally
        {
            await input.CompleteAsync();
            await output.CompleteAsync();
        }
    }

    /// <summary>Tells the client why it is closed (an unsolicited response, request_id 0), counts and logs it.</summary>
    private async Task IdleTimedOutAsync(PipeWriter output, PeerCredentials? peer, TimeSpan idleTimeout)
    {
        stats.AddLimitRefusal(Security.Limit.IpcIdleTimeout);
        var message = string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"no complete request within ipc.idle_timeout_seconds ({idleTimeout.TotalSeconds:0.###} s) of connecting or of the last answer; closing");
        if (MayWarn())
        {
            LogIdleTimeout(logger, peer?.Pid ?? 0, peer?.Uid ?? uint.MaxValue, message);
        }

        using var bounded = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        try
        {
            await ReplyAsync(output, new IpcResponse { Error = Error(RpcErrorKind.ResourceExhausted, message) }, bounded.Token);
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or SocketException or InvalidOperationException)
        {
            // The client does not read or is gone: closing is all that is left.
        }
    }

    /// <summary>True when an IPC connection warning may be logged now (after the count of those suppressed before it).</summary>
    private bool MayWarn()
    {
        if (!_warnings.TryAcquire(out var suppressed))
        {
            return false;
        }

        if (suppressed > 0)
        {
            LogSuppressed(logger, suppressed, _warnings.PerWindow, _warnings.Window.TotalSeconds);
        }

        return true;
    }

    private static async Task ReplyAsync(PipeWriter output, IpcResponse response, CancellationToken cancellationToken)
    {
        Framing.Write(output, response);
        await output.FlushAsync(cancellationToken);
    }

    private async Task<IpcResponse> HandleAsync(IpcRequest request, CancellationToken cancellationToken)
    {
        try
        {
            switch (request.BodyCase)
            {
                case IpcRequest.BodyOneofCase.Status:
                    return new IpcResponse { Status = await StatusAsync(cancellationToken) };
                case IpcRequest.BodyOneofCase.ListCollectors:
                    var list = new ListCollectorsResponse();
                    list.Collectors.AddRange(await control.ListCollectorsAsync(cancellationToken));
                    return new IpcResponse { ListCollectors = list };
                case IpcRequest.BodyOneofCase.CollectorCommand:
                    var (reply, error) = await control.ExecuteAsync(request.CollectorCommand, request.Correlation, cancellationToken);
                    return error is not null ? new IpcResponse { Error = error } : new IpcResponse { CollectorCommand = reply };
                case IpcRequest.BodyOneofCase.Metrics:
                    return new IpcResponse { Metrics = observability.Metrics() };
                case IpcRequest.BodyOneofCase.Health:
                    return new IpcResponse { Health = await observability.HealthAsync(cancellationToken) };
                case var other when _extensions.TryGetValue(other, out var extension):
                    return await extension.HandleAsync(request, cancellationToken);
                default:
                    return new IpcResponse { Error = Error(RpcErrorKind.InvalidOperation, "the request has no body; expected status, list_collectors, collector_command, metrics or health") };
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            LogFailed(logger, request.BodyCase, ex);
            return new IpcResponse { Error = Error(RpcErrorKind.ExecutionError, ex.Message) };
        }
    }

    private async Task<StatusResponse> StatusAsync(CancellationToken cancellationToken)
    {
        var registry = await grains.GetGrain<ISubscriptionRegistryGrain>(RegistryGrain.Key).GetStats().WaitAsync(cancellationToken);
        var r = rpc.Statistics;
        var status = new StatusResponse
        {
            AgentVersion = AgentInfo.Version,
            Pid = (uint)Environment.ProcessId,
            UptimeMs = (ulong)(time.GetUtcNow() - _started).TotalMilliseconds,
            BusSocket = bus.SocketPath,
            IpcSocket = endpoint.SocketPath,
            Broker = new BrokerStatistics
            {
                ConnectionsOpen = (ulong)Math.Max(0, stats.ConnectionsOpen),
                ConnectionsAccepted = (ulong)stats.ConnectionsAccepted,
                Published = (ulong)stats.Published,
                Delivered = (ulong)stats.Delivered,
                Dropped = (ulong)stats.Dropped,
                ProtocolErrors = (ulong)stats.ProtocolErrors,
                Unrouted = (ulong)stats.Unrouted,
                Subscriptions = (uint)registry.Subscriptions,
                MaxSubscribers = (uint)registry.MaxSubscribers,
                ActiveTopics = (uint)registry.ActiveTopics,
            },
            Rpc = new Protocol.Ipc.V1.RpcStatistics
            {
                Requests = (ulong)r.Requests,
                Responses = (ulong)r.Responses,
                Timeouts = (ulong)r.Timeouts,
                LateResponsesDiscarded = (ulong)r.LateResponsesDiscarded,
                Rejected = (ulong)r.Rejected,
                CommunicationErrors = (ulong)r.CommunicationErrors,
                Pending = (uint)r.Pending,
            },
        };
        status.Collectors.AddRange(await control.ListCollectorsAsync(cancellationToken));
        status.Security = SecurityStatistics(stats);
        return status;
    }

    private static SecurityStatistics SecurityStatistics(GatewayStatistics stats)
    {
        var security = new SecurityStatistics
        {
            PeersRefusedBus = (ulong)stats.PeersRefusedBus,
            PeersRefusedIpc = (ulong)stats.PeersRefusedIpc,
        };
        foreach (var rule in Security.AccessRules.All)
        {
            security.Denied[Security.AccessRules.Name(rule)] = (ulong)stats.DeniedBy(rule);
        }

        foreach (var limit in Security.Limits.All)
        {
            security.Limits[Security.Limits.Name(limit)] = (ulong)stats.RefusedBy(limit);
        }

        return security;
    }

    private static RpcError Error(RpcErrorKind kind, string message) => new() { Kind = kind, Message = message };

    public Task StopAsync(CancellationToken cancellationToken) => _server?.StopAsync(cancellationToken) ?? Task.CompletedTask;

    public ValueTask DisposeAsync() => _server?.DisposeAsync() ?? ValueTask.CompletedTask;

    [LoggerMessage(EventId = 2200, Level = LogLevel.Information, Message = "IPC listening on {SocketPath}")]
    private static partial void LogListening(ILogger logger, string socketPath);

    [LoggerMessage(EventId = 2201, Level = LogLevel.Debug, Message = "IPC {Request} (correlation {CorrelationId}) from pid {Pid} uid {Uid}")]
    private static partial void LogRequest(ILogger logger, IpcRequest.BodyOneofCase request, Untrusted correlationId, int pid, uint uid);

    [LoggerMessage(EventId = 2202, Level = LogLevel.Error, Message = "IPC {Request} failed")]
    private static partial void LogFailed(ILogger logger, IpcRequest.BodyOneofCase request, Exception exception);

    [LoggerMessage(EventId = 2203, Level = LogLevel.Warning, Message = "Refused an IPC connection from pid {Pid} uid {Uid}: ipc.max_connections ({Max}) are open")]
    private static partial void LogTooManyConnections(ILogger logger, int max, int pid, uint uid);

    [LoggerMessage(EventId = 2204, Level = LogLevel.Warning, Message = "IPC connection from pid {Pid} uid {Uid} closed by ipc.idle_timeout_seconds: {Detail}")]
    private static partial void LogIdleTimeout(ILogger logger, int pid, uint uid, string detail);

    [LoggerMessage(EventId = 2205, Level = LogLevel.Warning, Message = "{Suppressed} further IPC connection warnings were not logged (at most {Max} per {Seconds} s); the counters in daemoneye-cli status count every one")]
    private static partial void LogSuppressed(ILogger logger, long suppressed, int max, double seconds);
}
