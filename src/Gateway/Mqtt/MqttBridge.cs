using System.Collections.Concurrent;
using System.Net;
using System.Threading.Channels;
using DaemonEye.Configuration;
using DaemonEye.Gateway.Durability;
using DaemonEye.Gateway.Security;
using DaemonEye.Grains;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MQTTnet.Server;
using MQTTnet.Server.Internal.Adapter;

namespace DaemonEye.Gateway.Mqtt;

/// <summary>
/// The MQTT listener (docs/protocol.md, "MQTT"): an MQTTnet server whose connections come from our Unix socket
/// (<see cref="UnixMqttServerAdapter"/>) and, opt-in, from 127.0.0.1 TCP, bridged onto the bus. MQTTnet
/// parses MQTT, keeps sessions and fans messages out to MQTT clients; every decision is the bus's:
/// <list type="bullet">
/// <item>CONNECT: the role the bus socket would grant the peer (<see cref="AccessControl.Decide"/>), or a
/// configured TCP user's role (<c>mqtt.users</c>, <c>mqtt.tcp_role</c>).</item>
/// <item>PUBLISH: the topic mapped (<see cref="MqttTopics"/>), checked by the connection's
/// <see cref="AccessPolicy"/> and routed by a <see cref="PublishAccumulator"/> as a bus connection's
/// publish is (topic limits, durable log first); MQTTnet does not route it itself.</item>
/// <item>SUBSCRIBE: the filter checked by the policy; the bridge is one of the agent's own subscribers
/// (<see cref="LocalSubscriptions"/>: one local connection, one bus subscription per distinct pattern) and
/// injects each delivered message once into MQTTnet, which hands it to every MQTT client whose filter
/// matches. A persistent session's QoS 1 filter over durable topics also gets a durable consumer
/// (<see cref="MqttDurableSession"/>).</item>
/// </list>
/// </summary>
internal sealed partial class MqttBridge : IHostedLifecycleService, IAsyncDisposable
{
    /// <summary>Sender id of live bus messages injected into MQTTnet. MQTT clients may not use ids starting with '$'.</summary>
    internal const string LiveSender = "$daemoneye/bus";

    /// <summary>Sender id prefix of durable messages injected for one client: the client id follows.</summary>
    internal const string DurableSenderPrefix = "$daemoneye/durable/";

    private readonly MqttOptions _options;
    private readonly BrokerOptions _broker;
    private readonly AccessControl _access;
    private readonly IGrainFactory _grains;
    private readonly TopicRoutes _routes;
    private readonly LocalSubscriptions _local;
    private readonly GatewayStatistics _stats;
    private readonly Metrics.BusMetrics _busMetrics;
    private readonly MqttMetrics _metrics;
    private readonly DurableLog? _durable;
    private readonly TimeProvider _time;
    private readonly ILogger<MqttBridge> _logger;
    private readonly UnixMqttServerAdapter _unix;
    private readonly MqttTcpServerAdapter? _tcp;
    private readonly MqttServer _server;
    private readonly MqttServerOptions _serverOptions;
    private readonly ConcurrentDictionary<string, MqttClient> _clients = new(StringComparer.Ordinal);
    private readonly Dictionary<string, byte[]> _users;
    private long _lastConnection;
    private long _localId; // the bridge's local connection (LocalSubscriptions): its bus subscriptions are held under it
    private int _connected;

    public MqttBridge(
        IOptions<MqttOptions> options,
        IOptions<BrokerOptions> broker,
        IOptions<SecurityOptions> security,
        BusEndpoint bus,
        AccessControl access,
        IGrainFactory grains,
        TopicRoutes routes,
        LocalSubscriptions local,
        GatewayStatistics stats,
        Metrics.BusMetrics busMetrics,
        MqttMetrics metrics,
        TimeProvider time,
        ILogger<MqttBridge> logger,
        DurableLog? durable = null)
    {
        _options = options.Value;
        _broker = broker.Value;
        _access = access;
        _grains = grains;
        _routes = routes;
        _local = local;
        _stats = stats;
        _busMetrics = busMetrics;
        _metrics = metrics;
        _durable = durable;
        _time = time;
        _logger = logger;
        _users = _options.Users.ToDictionary(u => u.Key, u => System.Text.Encoding.UTF8.GetBytes(u.Value ?? string.Empty), StringComparer.Ordinal);
        _pending = Channel.CreateUnbounded<PublishBatch>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = false });
        metrics.ObserveConnections(() => Volatile.Read(ref _connected));

        _unix = new UnixMqttServerAdapter(_options.ResolvedSocketPath(bus.SocketPath),
            security.Value.ResolveSocketGroupId(), access, stats, metrics, time, logger);
        var adapters = new List<IMqttServerAdapter> { _unix };
        var serverOptions = _serverOptions = new MqttServerOptionsBuilder()
            .WithPersistentSessions()
            .WithMaxPendingMessagesPerClient(_options.MaxPendingMessages)
            // The oldest queued message goes: its event fires on overflow only (a per-message event costs a third of the rate).
            .WithPendingMessagesOverflowStrategy(MQTTnet.Server.MqttPendingMessagesOverflowStrategy.DropOldestQueuedMessage)
            .Build();
        serverOptions.DefaultEndpointOptions.IsEnabled = _options.TcpEnabled;
        if (_options.TcpEnabled)
        {
            serverOptions.DefaultEndpointOptions.BoundInterNetworkAddress = IPAddress.Loopback;
            serverOptions.DefaultEndpointOptions.BoundInterNetworkV6Address = IPAddress.None;
            serverOptions.DefaultEndpointOptions.Port = _options.TcpPort;
            _tcp = new MqttTcpServerAdapter();
            adapters.Add(new ClientIdAssigningAdapter(_tcp));
        }

        _server = new MqttServerFactory().CreateMqttServer(serverOptions, adapters);
        _server.ValidatingConnectionAsync += ValidateConnectionAsync;
        _server.ClientConnectedAsync += ClientConnectedAsync;
        _server.ClientDisconnectedAsync += ClientDisconnectedAsync;
        _server.SessionDeletedAsync += SessionDeletedAsync;
        _server.InterceptingPublishAsync += InterceptPublishAsync;
        _server.InterceptingSubscriptionAsync += InterceptSubscriptionAsync;
        _server.ClientSubscribedTopicAsync += SubscribedAsync;
        _server.InterceptingUnsubscriptionAsync += InterceptUnsubscriptionAsync;
        _server.QueuedApplicationMessageOverwrittenAsync += OverflowedAsync;
        _server.ClientAcknowledgedPublishPacketAsync += AcknowledgedAsync;
    }

    /// <summary>The Unix socket in use.</summary>
    public string SocketPath => _unix.SocketPath;

    /// <summary>The TCP port in use (the bound one when mqtt.tcp_port is 0); null without TCP.</summary>
    public int? TcpPort => _tcp is null ? null : _serverOptions.DefaultEndpointOptions.Port;

    public Task StartingAsync(CancellationToken cancellationToken)
    {
        _unix.Bind();
        return Task.CompletedTask;
    }

    /// <summary>Starts accepting once the silo (registered earlier) is up.</summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        _localId = _local.Open(this);
        _pump = Task.Run(PumpAsync, CancellationToken.None);
        await _server.StartAsync();
        LogListening(_logger, SocketPath, TcpPort is { } port ? $"127.0.0.1:{port} ({_users.Count} users, role {_options.TcpRole})" : "off (mqtt.tcp_enabled)",
            _durable is null ? "off (durability.enabled)" : string.Join(", ", _durable.Patterns));
    }

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (!_server.IsStarted)
        {
            return;
        }

        await _server.StopAsync(new MqttServerStopOptions());
        foreach (var client in _clients.Values)
        {
            await client.StopDurableAsync(_durable);
        }

        try
        {
            await _local.CloseAsync(_localId);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The silo may already be stopping; the bridge's subscriptions go with it.
        }

        _pending.Writer.TryComplete();
        await _pump;
    }

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        await StopAsync(CancellationToken.None);
        _server.Dispose();
    }

    private long NextConnectionNumber() => -Interlocked.Increment(ref _lastConnection);

    [LoggerMessage(EventId = 2800, Level = LogLevel.Information, Message = "MQTT listening on {SocketPath}; TCP {Tcp}; durable topics for persistent QoS 1 sessions: {Durable}")]
    private static partial void LogListening(ILogger logger, string socketPath, string tcp, string durable);
}
