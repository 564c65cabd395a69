using System.Net;
using System.Security.Cryptography.X509Certificates;
using MQTTnet.Adapter;
using MQTTnet.Diagnostics.Logger;
using MQTTnet.Formatter;
using MQTTnet.Packets;
using MQTTnet.Server;

namespace DaemonEye.Gateway.Mqtt;

/// <summary>
/// MQTT 3.1.1 §3.1.3.1: a client may send an empty client id with CleanSession set, and the server then
/// assigns one (mosquitto_pub and mosquitto_sub do so when not given -i). MQTTnet assigns ids for
/// MQTT 5 only; this channel fills in the id of such a CONNECT before MQTTnet reads it. An empty id
/// without CleanSession is left alone, and refused (identifier rejected) as the specification says.
/// </summary>
internal sealed class ClientIdAssigningChannel(IMqttChannelAdapter inner) : IMqttChannelAdapter
{
    private bool _connectSeen;

    public long BytesReceived => inner.BytesReceived;

    public long BytesSent => inner.BytesSent;

    public X509Certificate2 ClientCertificate => inner.ClientCertificate;

    public EndPoint RemoteEndPoint => inner.RemoteEndPoint;

    public EndPoint LocalEndPoint => inner.LocalEndPoint;

    public bool IsSecureConnection => inner.IsSecureConnection;

    public MqttPacketFormatterAdapter PacketFormatterAdapter => inner.PacketFormatterAdapter;

    public Task ConnectAsync(CancellationToken cancellationToken) => inner.ConnectAsync(cancellationToken);

    public Task DisconnectAsync(CancellationToken cancellationToken) => inner.DisconnectAsync(cancellationToken);

    public async Task<MqttPacket> ReceivePacketAsync(CancellationToken cancellationToken)
    {
        var packet = await inner.ReceivePacketAsync(cancellationToken);
        if (!_connectSeen && packet is MqttConnectPacket connect)
        {
            _connectSeen = true;
            if (string.IsNullOrEmpty(connect.ClientId) && connect.CleanSession && PacketFormatterAdapter.ProtocolVersion != MqttProtocolVersion.V500)
            {
                connect.ClientId = NewId();
            }
        }

        return packet;
    }

    public void ResetStatistics() => inner.ResetStatistics();

    public Task SendPacketAsync(MqttPacket packet, CancellationToken cancellationToken) => inner.SendPacketAsync(packet, cancellationToken);

    public void Dispose() => inner.Dispose();

    /// <summary>An id for a client that asked the server to choose one.</summary>
    public static string NewId() => $"auto-{Guid.NewGuid():N}";
}

/// <summary>MQTTnet's TCP listener with <see cref="ClientIdAssigningChannel"/> on each connection.</summary>
internal sealed class ClientIdAssigningAdapter(IMqttServerAdapter inner) : IMqttServerAdapter
{
    private Func<IMqttChannelAdapter, Task>? _handler;

    public Func<IMqttChannelAdapter, Task>? ClientHandler
    {
        get => _handler;
        set
        {
            _handler = value;
            inner.ClientHandler = value is null ? null : channel => value(new ClientIdAssigningChannel(channel));
        }
    }

    public Task StartAsync(MqttServerOptions options, IMqttNetLogger logger) => inner.StartAsync(options, logger);

    public Task StopAsync() => inner.StopAsync();

    public void Dispose() => inner.Dispose();
}
