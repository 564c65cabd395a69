using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using DaemonEye.Configuration;
using DaemonEye.Gateway.Metrics;
using DaemonEye.Gateway.Rpc;
using DaemonEye.Protocol;
using DaemonEye.Protocol.Collector.V1;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.V1;
using Microsoft.Extensions.Options;

namespace DaemonEye.Gateway.Health;

/// <summary>
/// The product document's health checks, evaluated on request (<c>daemoneye-cli health</c>):
/// <list type="bullet">
/// <item>broker: a Hello on the bus socket gets its Welcome within health.probe_timeout_seconds (else Unhealthy);</item>
/// <item>rpc: every running, connected collector answers a HealthCheck RPC, healthy, within that time (else Degraded;
/// Unhealthy when the pending table is full, so every call is refused);</item>
/// <item>heartbeats: no running collector has missed a heartbeat interval (else Degraded); no collector is Failed
/// (gave up restarting; Unhealthy);</item>
/// <item>buffers: no subscriber's outbound buffer is health.buffer_degraded_percent full (Degraded) or full (Unhealthy);</item>
/// <item>error_rate: errors per second over health.error_rate_window_seconds at most health.max_error_rate_per_second
/// (else Degraded). Errors: protocol errors, unrouted messages, failed RPC calls, denied actions.</item>
/// <item>whatever other features add (<see cref="IAgentHealthContributor"/>): coordination's "rules".</item>
/// </list>
/// The overall status is the worst check's.
/// </summary>
internal sealed class AgentHealth : IDisposable
{
    private const string ProbeClientId = "agent-health-probe";
    private readonly BusEndpoint _bus;
    private readonly HealthOptions _options;
    private readonly RpcOptions _rpcOptions;
    private readonly IAgentControl _control;
    private readonly IAgentRpc _rpc;
    private readonly ConnectionDirectory _connections;
    private readonly GatewayStatistics _stats;
    private readonly BusMetrics _busMetrics;
    private readonly RpcMetrics _rpcMetrics;
    private readonly TimeProvider _time;
    private readonly ErrorRateWindow _errors;
    private readonly ITimer _sampler;
    private readonly IAgentHealthContributor[] _contributors;

    public AgentHealth(
        BusEndpoint bus,
        IOptions<HealthOptions> options,
        IOptions<RpcOptions> rpcOptions,
        IAgentControl control,
        IAgentRpc rpc,
        ConnectionDirectory connections,
        GatewayStatistics stats,
        BusMetrics busMetrics,
        RpcMetrics rpcMetrics,
        TimeProvider time,
        IEnumerable<IAgentHealthContributor> contributors)
    {
        _contributors = [.. contributors];
        _bus = bus;
        _options = options.Value;
        _rpcOptions = rpcOptions.Value;
        _control = control;
        _rpc = rpc;
        _connections = connections;
        _stats = stats;
        _busMetrics = busMetrics;
        _rpcMetrics = rpcMetrics;
        _time = time;
        _errors = new ErrorRateWindow(_options.ErrorRateWindow);
        _errors.Sample(time.GetUtcNow(), ErrorTotal);
        _sampler = time.CreateTimer(_ => _errors.Sample(_time.GetUtcNow(), ErrorTotal), null, _errors.SampleInterval, _errors.SampleInterval);
    }

    /// <summary>Protocol errors, unrouted messages, failed RPC calls and denied actions so far.</summary>
    private long ErrorTotal => _stats.ProtocolErrors + _stats.Unrouted + _rpcMetrics.ErrorsTotal + _busMetrics.DeniedTotal;

    public async Task<HealthResponse> EvaluateAsync(CancellationToken cancellationToken)
    {
        var collectors = await _control.ListCollectorsAsync(cancellationToken);
        var checks = await Task.WhenAll(
            BrokerAsync(cancellationToken),
            RpcAsync(collectors, cancellationToken));
        var response = new HealthResponse();
        response.Checks.AddRange(checks);
        response.Checks.Add(Heartbeats(collectors));
        response.Checks.Add(Buffers());
        response.Checks.Add(ErrorRate());
        foreach (var contributor in _contributors)
        {
            response.Checks.Add(await contributor.CheckAsync(cancellationToken));
        }

        response.Status = response.Checks.Max(c => c.Status);
        return response;
    }

    private static HealthCheckResult Check(string name, HealthStatus status, string detail) => new() { Name = name, Status = status, Detail = detail };

    private async Task<HealthCheckResult> BrokerAsync(CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.ProbeTimeout);
        try
        {
            using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(_bus.SocketPath), timeout.Token);
            await socket.SendAsync(Framing.ToFrame(new Envelope
            {
                RequestId = 1,
                Hello = new Hello { ProtocolVersion = ProtocolConstants.Version, ClientId = ProbeClientId, Role = Role.Client, ClientVersion = $"daemoneye-agent/{AgentInfo.Version}" },
            }), timeout.Token);
            var reply = await ReadEnvelopeAsync(socket, timeout.Token);
            var open = Math.Max(0, _stats.ConnectionsOpen - 1);
            return reply.BodyCase == Envelope.BodyOneofCase.Welcome
                ? Check("broker", HealthStatus.Healthy, string.Create(CultureInfo.InvariantCulture, $"accepting connections on {_bus.SocketPath}: Hello answered with Welcome in {clock.Elapsed.TotalMilliseconds:0.0} ms; {open} other connection(s) open"))
                : Check("broker", HealthStatus.Unhealthy, $"Hello on {_bus.SocketPath} was answered with {reply.BodyCase}: {reply.Error?.Message}");
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return Check("broker", HealthStatus.Unhealthy, string.Create(CultureInfo.InvariantCulture, $"no Welcome on {_bus.SocketPath} within {_options.ProbeTimeout.TotalSeconds:0.###} s (health.probe_timeout_seconds)"));
        }
        catch (Exception ex) when (ex is SocketException or IOException or InvalidDataException or Google.Protobuf.InvalidProtocolBufferException)
        {
            return Check("broker", HealthStatus.Unhealthy, $"the bus socket {_bus.SocketPath} does not accept connections: {ex.Message}");
        }
    }

    private static async Task<Envelope> ReadEnvelopeAsync(Socket socket, CancellationToken cancellationToken)
    {
        var buffer = new byte[64 * 1024];
        var filled = 0;
        while (true)
        {
            var read = await socket.ReceiveAsync(buffer.AsMemory(filled), cancellationToken);
            if (read == 0)
            {
                throw new IOException("the agent closed the connection before answering Hello");
            }

            filled += read;
            var sequence = new System.Buffers.ReadOnlySequence<byte>(buffer, 0, filled);
            switch (Framing.TryReadFrame(ref sequence, buffer.Length, out var frame, out _))
            {
                case FrameStatus.Complete:
                    return Envelope.Parser.ParseFrom(frame);
                case FrameStatus.TooLarge:
                    throw new InvalidDataException("the answer to Hello is larger than 64 KiB");
            }
        }
    }

    private async Task<HealthCheckResult> RpcAsync(IReadOnlyList<CollectorStatus> collectors, CancellationToken cancellationToken)
    {
        var pending = _rpc.Statistics.Pending;
        if (pending >= _rpcOptions.MaxPendingRequests)
        {
            return Check("rpc", HealthStatus.Unhealthy, $"{pending} calls pending: rpc.max_pending_requests ({_rpcOptions.MaxPendingRequests}) reached, every new call is refused");
        }

        var targets = collectors.Where(c => c.State == CollectorState.Running && _rpc.FindCollector(c.Id) is not null).Select(c => c.Id).ToList();
        if (targets.Count == 0)
        {
            return Check("rpc", HealthStatus.Healthy, $"no running collector connected to ask; {pending} call(s) pending");
        }

        var clock = Stopwatch.StartNew();
        var answers = await Task.WhenAll(targets.Select(async id => (Id: id, Response: await _rpc.CallAsync(id, RpcOperation.HealthCheck, timeout: _options.ProbeTimeout, cancellationToken: cancellationToken))));
        var problems = new List<string>();
        foreach (var (id, response) in answers)
        {
            if (response.Status != RpcStatus.Ok)
            {
                problems.Add($"{id}: {response.Error?.Kind ?? RpcErrorKind.Unspecified} ({response.Error?.Message})");
                continue;
            }

            var health = HealthCheckResponse.Parser.ParseFrom(response.Payload);
            if (!health.Healthy)
            {
                problems.Add($"{id}: answered unhealthy '{health.Status}'");
            }
        }

        return problems.Count == 0
            ? Check("rpc", HealthStatus.Healthy, string.Create(CultureInfo.InvariantCulture, $"{targets.Count} collector(s) answered HealthCheck healthy in {clock.Elapsed.TotalMilliseconds:0.0} ms; {pending} call(s) pending"))
            : Check("rpc", HealthStatus.Degraded, $"{problems.Count} of {targets.Count} collector(s) did not answer HealthCheck healthy within {_options.ProbeTimeout.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture)} s: {string.Join("; ", problems)}");
    }

    private static HealthCheckResult Heartbeats(IReadOnlyList<CollectorStatus> collectors)
    {
        if (collectors.Count == 0)
        {
            return Check("heartbeats", HealthStatus.Healthy, "no collectors configured or connected");
        }

        var failed = collectors.Where(c => c.State == CollectorState.Failed).ToList();
        var silent = collectors.Where(c => c.State == CollectorState.Running && c.Health is CollectorHealth.Degraded or CollectorHealth.Unhealthy).ToList();
        var running = collectors.Count(c => c.State == CollectorState.Running);
        if (failed.Count > 0)
        {
            return Check("heartbeats", HealthStatus.Unhealthy, $"{failed.Count} collector(s) Failed: {string.Join("; ", failed.Select(c => $"{c.Id} ({c.Reason})"))}");
        }

        var looping = collectors.Where(c => c.State is not (CollectorState.Running or CollectorState.Failed) && c.Health is CollectorHealth.Degraded or CollectorHealth.Unhealthy).ToList();
        if (looping.Count > 0)
        {
            return Check("heartbeats", HealthStatus.Degraded, $"{looping.Count} collector(s) exited unexpectedly and are being restarted (crash-looping until process_manager.max_restart_attempts, then Failed): {string.Join("; ", looping.Select(c => $"{c.Id} {c.State}, {c.Restarts} restart(s) ({c.Reason})"))}");
        }

        if (silent.Count > 0)
        {
            return Check("heartbeats", HealthStatus.Degraded, $"{silent.Count} of {running} running collector(s) missed heartbeats: {string.Join(", ", silent.Select(c => $"{c.Id} ({c.Health})"))}");
        }

        var other = collectors.Count - running;
        return Check("heartbeats", HealthStatus.Healthy, $"{running} running collector(s) heartbeating{(other > 0 ? $"; {other} not running ({string.Join(", ", collectors.Where(c => c.State != CollectorState.Running).Select(c => $"{c.Id} {c.State}"))})" : string.Empty)}");
    }

    private HealthCheckResult Buffers()
    {
        // Each connection's outbound buffer has two sizes: messages (broker.message_buffer_size) and
        // bytes (broker.max_outbound_bytes). Its fill is the larger share; the peaks are the headroom
        // actually used since the connection opened.
        BusConnection? fullest = null;
        BusConnection? peakMessages = null;
        BusConnection? peakBytes = null;
        var full = new List<string>();
        double max = 0;
        foreach (var c in _connections.Connections)
        {
            var utilization = Math.Max((double)c.Queued / c.BufferCapacity, (double)c.QueuedBytes / c.BufferBytesCapacity);
            if (c.Queued >= c.BufferCapacity)
            {
                full.Add($"c{c.Id} ({c.ClientId})");
            }

            if (fullest is null || utilization > max)
            {
                fullest = c;
                max = utilization;
            }

            if (peakMessages is null || c.PeakQueued > peakMessages.PeakQueued)
            {
                peakMessages = c;
            }

            if (peakBytes is null || c.PeakQueuedBytes > peakBytes.PeakQueuedBytes)
            {
                peakBytes = c;
            }
        }

        var dropped = _stats.Dropped;
        var cut = _stats.RefusedBy(Security.Limit.MaxOutboundBytes);
        var since = $"{dropped} dropped, {cut} client(s) cut off for not reading (broker.max_outbound_bytes) since start";
        if (full.Count > 0)
        {
            return Check("buffers", HealthStatus.Unhealthy, $"{full.Count} subscriber buffer(s) full, their messages are being dropped: {string.Join(", ", full)}; {since}");
        }

        var percent = max * 100;
        var summary = fullest is null
            ? "no connections"
            : string.Create(CultureInfo.InvariantCulture,
                $"fullest c{fullest.Id} ({fullest.ClientId}) {fullest.Queued}/{fullest.BufferCapacity} messages, {fullest.QueuedBytes}/{fullest.BufferBytesCapacity} bytes ({percent:0.#} %); " +
                $"peaks {peakMessages!.PeakQueued} messages (c{peakMessages.Id}), {peakBytes!.PeakQueuedBytes} bytes (c{peakBytes.Id})");
        return percent >= _options.BufferDegradedPercent
            ? Check("buffers", HealthStatus.Degraded, $"{summary}, at or above health.buffer_degraded_percent ({_options.BufferDegradedPercent} %); {since}")
            : Check("buffers", HealthStatus.Healthy, $"{summary}; {since}");
    }

    private HealthCheckResult ErrorRate()
    {
        var (errors, perSecond) = _errors.Evaluate(_time.GetUtcNow(), ErrorTotal);
        var detail = string.Create(CultureInfo.InvariantCulture,
            $"{errors} error(s) in the last {_errors.Window.TotalSeconds:0} s = {perSecond:0.###}/s; threshold health.max_error_rate_per_second {_options.MaxErrorRatePerSecond:0.###}/s");
        return perSecond > _options.MaxErrorRatePerSecond ? Check("error_rate", HealthStatus.Degraded, detail) : Check("error_rate", HealthStatus.Healthy, detail);
    }

    public void Dispose() => _sampler.Dispose();
}
