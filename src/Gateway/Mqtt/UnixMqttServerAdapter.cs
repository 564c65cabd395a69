using System.Net;
using System.Net.Sockets;
using DaemonEye.Gateway.Security;
using Microsoft.Extensions.Logging;
using MQTTnet.Adapter;
using MQTTnet.Diagnostics.Logger;
using MQTTnet.Formatter;
using MQTTnet.Implementations;
using MQTTnet.Server;

namespace DaemonEye.Gateway.Mqtt;

/// <summary>
/// The far end of an MQTT connection on the Unix socket: its path and the peer's credentials as the
/// kernel reported them at accept (SO_PEERCRED). The bridge reads them when the client's CONNECT is
/// validated, to grant the same role the bus socket would.
/// </summary>
internal sealed class UnixPeerEndPoint(string path, PeerCredentials? peer) : EndPoint
{
    public PeerCredentials? Peer { get; } = peer;

    public override AddressFamily AddressFamily => AddressFamily.Unix;

    public override string ToString() => Peer is { } p ? $"unix:{path} pid {p.Pid} uid {p.Uid}" : $"unix:{path} (no peer credentials)";
}

/// <summary>
/// MQTTnet's server fed from our Unix socket: MQTTnet ships TCP listeners only, and takes any stream
/// through its <see cref="IMqttServerAdapter"/>. The socket is bound and accepted by the agent's own
/// <see cref="UnixSocketServer"/> (permissions, accept back-off, descriptor reserve, drain); each
/// accepted peer is admitted by <see cref="AccessControl.AdmitPeer"/> exactly as on the bus socket
/// before a byte of MQTT is read, then handed to MQTTnet as a stream channel.
/// </summary>
internal sealed partial class UnixMqttServerAdapter : IMqttServerAdapter
{
    private readonly UnixSocketServer _server;
    private readonly AccessControl _access;
    private readonly MqttMetrics _metrics;
    private readonly ILogger _logger;
    private MqttServerOptions? _options;
    private IMqttNetLogger? _mqttLogger;

    public UnixMqttServerAdapter(string path, uint? socketGroup, AccessControl access, GatewayStatistics stats, MqttMetrics metrics, TimeProvider time, ILogger logger)
    {
        _access = access;
        _metrics = metrics;
        _logger = logger;
        _server = new UnixSocketServer(path, "mqtt", ServeAsync, logger, socketGroup, time, stats, Limit.MqttAcceptFailed);
    }

    public Func<IMqttChannelAdapter, Task>? ClientHandler { get; set; }

    public string SocketPath => _server.SocketPath;

    /// <summary>Binds the socket (before the host starts: a path a live agent holds fails start-up at once).</summary>
    public void Bind() => _server.Bind();

    public Task StartAsync(MqttServerOptions options, IMqttNetLogger logger)
    {
        _options = options;
        _mqttLogger = logger;
        _server.Start();
        return Task.CompletedTask;
    }

    public async Task StopAsync() => await _server.StopAsync(CancellationToken.None);

    public void Dispose() => _server.DisposeAsync().AsTask().GetAwaiter().GetResult();

    private async Task ServeAsync(Socket client, long id, CancellationToken stopping)
    {
        using (client)
        {
            var peer = PeerCredentials.Of(client);
            if (!_access.AdmitPeer(peer, ipc: false, out var refusal, socket: "MQTT"))
            {
                // MQTT has no way to say why before CONNECT; the refusal is logged and counted (peers_refused_bus).
                _metrics.ConnectionRefused(MqttMetrics.RefusedPeer);
                LogPeerRefused(_logger, id, refusal!);
                return;
            }

            if (ClientHandler is not { } handler || _options is null || _mqttLogger is null)
            {
                return;
            }

            var stream = new BufferedSocketStream(new NetworkStream(client, ownsSocket: false));
            await using (stream)
            {
                var channel = new MqttTcpChannel(stream, client.LocalEndPoint, new UnixPeerEndPoint(SocketPath, peer), null);
                var formatter = new MqttPacketFormatterAdapter(new MqttBufferWriter(_options.WriterBufferSize, _options.WriterBufferSizeMax));
                // One write per packet: with fragmentation (MQTTnet's default) the header and the payload are
                // two sends, twice the syscalls per message for a packet copy saved.
                using var adapter = new MqttChannelAdapter(channel, formatter, _mqttLogger) { AllowPacketFragmentation = false };
                _metrics.Accepted(MqttMetrics.TransportUnix);
                using (stopping.Register(static s => Shutdown((Socket)s!), client))
                {
                    await handler(new ClientIdAssigningChannel(adapter));
                }
            }

            // Writes are sent by the stream's sender: what MQTTnet wrote last (a CONNACK refusal, a
            // DISCONNECT) goes out before the socket closes, unless the peer stops reading.
            using var drain = CancellationTokenSource.CreateLinkedTokenSource(stopping);
            drain.CancelAfter(_options.DefaultCommunicationTimeout);
            await stream.DrainAsync(drain.Token);
        }
    }

    private static void Shutdown(Socket socket)
    {
        try
        {
            socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // Already closed.
        }
    }

    [LoggerMessage(EventId = 2801, Level = LogLevel.Debug, Message = "MQTT socket connection {Id} refused: {Refusal}")]
    private static partial void LogPeerRefused(ILogger logger, long id, string refusal);
}
