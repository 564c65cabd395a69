using System.Security.Cryptography;
using DaemonEye.Gateway.Security;
using DaemonEye.Logging;
using DaemonEye.Protocol.V1;
using Microsoft.Extensions.Logging;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using MQTTnet.Server;

namespace DaemonEye.Gateway.Mqtt;

/// <summary>CONNECT and DISCONNECT: who the client is, what it may do, and its session's life.</summary>
internal sealed partial class MqttBridge
{
    private async Task ValidateConnectionAsync(ValidatingConnectionEventArgs e)
    {
        var clientId = e.ClientId;
        if (string.IsNullOrEmpty(clientId) && e.ProtocolVersion == MqttProtocolVersion.V500)
        {
            clientId = e.AssignedClientIdentifier = ClientIdAssigningChannel.NewId();
        }

        if (string.IsNullOrEmpty(clientId) || clientId[0] == '$' || clientId.Length > 128)
        {
            Refuse(e, MqttConnectReasonCode.ClientIdentifierNotValid, MqttMetrics.RefusedClientId,
                $"client id '{clientId}' is not allowed: 1 to 128 characters, not starting with '$' (the agent's own senders)");
            return;
        }

        var number = NextConnectionNumber();
        PeerCredentials? peer = null;
        string identity;
        AccessPolicy policy;
        if (e.RemoteEndPoint is UnixPeerEndPoint unix)
        {
            // Admitted at accept by the bus socket's rule; the role is the one a bus client would be granted.
            peer = unix.Peer;
            identity = $"uid:{peer?.Uid}";
            var decision = _access.Decide(new Hello { ClientId = clientId, Role = Role.Client }, peer, number);
            policy = decision.Policy!;
        }
        else
        {
            _metrics.Accepted(MqttMetrics.TransportTcp);
            if (e.UserName is not { Length: > 0 } user || !_users.TryGetValue(user, out var expected)
                || !CryptographicOperations.FixedTimeEquals(expected, e.RawPassword ?? []))
            {
                Refuse(e, MqttConnectReasonCode.BadUserNameOrPassword, MqttMetrics.RefusedCredentials,
                    $"TCP client '{clientId}' from {e.RemoteEndPoint}: {(string.IsNullOrEmpty(e.UserName) ? "no user name" : $"user '{e.UserName}' unknown or wrong password")} (mqtt.users)");
                return;
            }

            identity = $"user:{user}";
            policy = _options.TcpUsersClients ? AccessPolicy.Client(operates: false) : AccessPolicy.Subscriber();
        }

        if (Volatile.Read(ref _connected) >= _options.MaxConnections)
        {
            _stats.AddLimitRefusal(Limit.MqttMaxConnections);
            Refuse(e, MqttConnectReasonCode.ServerBusy, MqttMetrics.RefusedLimit,
                $"client '{clientId}' ({identity}): mqtt.max_connections ({_options.MaxConnections}) MQTT clients are connected");
            return;
        }

        var persistent = e.ProtocolVersion == MqttProtocolVersion.V500 ? e.SessionExpiryInterval > 0 : e.CleanSession == false;
        var client = _clients.GetOrAdd(clientId, id => new MqttClient(id, identity));
        if (client.Identity != identity)
        {
            Refuse(e, MqttConnectReasonCode.NotAuthorized, MqttMetrics.RefusedClientId,
                $"client id '{clientId}' has a session held by {client.Identity}; {identity} may not take it over (use another client id)");
            return;
        }

        if (e.CleanSession == true)
        {
            // A clean start ends whatever the id's session held (MQTTnet replaces the session without an event).
            await EndSessionAsync(client, keep: true);
        }

        lock (client.Gate)
        {
            client.Policy = policy;
            client.Peer = peer;
            client.EndPoint = e.RemoteEndPoint;
            client.Number = number;
            client.Persistent = persistent;
            client.V5 = e.ProtocolVersion == MqttProtocolVersion.V500;
            client.Publishes = new PublishAccumulator(_grains, _routes, _broker.MaxTopicsPerConnection, _broker.MaxTopics, _busMetrics, _durable);
        }

        LogConnecting(_logger, number, clientId, e.ProtocolVersion, identity, policy.Role, persistent);
    }

    private void Refuse(ValidatingConnectionEventArgs e, MqttConnectReasonCode code, int reason, string detail)
    {
        e.ReasonCode = code;
        e.ReasonString = detail;
        _metrics.ConnectionRefused(reason);
        LogConnectRefused(_logger, e.RemoteEndPoint?.ToString() ?? "?", code, detail);
    }

    private async Task ClientConnectedAsync(ClientConnectedEventArgs e)
    {
        Interlocked.Increment(ref _connected);
        if (!_clients.TryGetValue(e.ClientId, out var client))
        {
            return;
        }

        // A resumed session's durable filters continue where their consumers' acks are.
        List<string> filters;
        lock (client.Gate)
        {
            filters = [.. client.Durable.Keys];
        }

        if (filters.Count > 0)
        {
            await client.StopDurableAsync(_durable);
            foreach (var filter in filters)
            {
                MqttDurableSession? session;
                lock (client.Gate)
                {
                    client.Durable.Remove(filter, out session);
                }

                if (session is not null)
                {
                    Interlocked.Decrement(ref _durableSessions);
                }

                if (session is not null && AttachDurable(client, filter, session.Pattern, out var refusal) is null)
                {
                    LogDurableResumeFailed(_logger, client.Number, client.ClientId, filter, refusal!);
                }
            }
        }
    }

    private async Task ClientDisconnectedAsync(ClientDisconnectedEventArgs e)
    {
        Interlocked.Decrement(ref _connected);
        if (!_clients.TryGetValue(e.ClientId, out var client))
        {
            return;
        }

        bool current;
        lock (client.Gate)
        {
            // A takeover reports the old connection after the new one was validated: leave the new one's state.
            current = Equals(client.EndPoint, e.RemoteEndPoint);
        }

        if (!current)
        {
            return;
        }

        await client.StopDurableAsync(_durable);
        LogDisconnected(_logger, client.Number, client.ClientId, e.DisconnectType, client.Persistent);
        if (!client.Persistent)
        {
            await EndSessionAsync(client, keep: false);
        }
    }

    private async Task SessionDeletedAsync(SessionDeletedEventArgs e)
    {
        if (_clients.TryGetValue(e.Id, out var client))
        {
            await EndSessionAsync(client, keep: false);
        }
    }

    /// <summary>Releases what a session held on the bus: its live patterns and its durable sessions (the consumers stay stored).</summary>
    private async Task EndSessionAsync(MqttClient client, bool keep)
    {
        await client.StopDurableAsync(_durable);
        List<string> patterns;
        lock (client.Gate)
        {
            patterns = [.. client.Live.Values];
            client.Live.Clear();
            Interlocked.Add(ref _durableSessions, -client.Durable.Count);
            client.Durable.Clear();
        }

        foreach (var pattern in patterns)
        {
            await ReleaseLiveAsync(pattern);
        }

        if (!keep)
        {
            _clients.TryRemove(new KeyValuePair<string, MqttClient>(client.ClientId, client));
        }
    }

    [LoggerMessage(EventId = 2802, Level = LogLevel.Information, Message = "MQTT connection {Number}: client {ClientId} ({Protocol}, {Identity}) granted role {Role}; persistent session {Persistent}")]
    private static partial void LogConnecting(ILogger logger, long number, Untrusted clientId, MqttProtocolVersion protocol, string identity, Role role, bool persistent);

    [LoggerMessage(EventId = 2803, Level = LogLevel.Warning, Message = "MQTT connection from {EndPoint} refused ({Code}): {Detail}")]
    private static partial void LogConnectRefused(ILogger logger, string endPoint, MqttConnectReasonCode code, Untrusted detail);

    [LoggerMessage(EventId = 2804, Level = LogLevel.Information, Message = "MQTT connection {Number}: client {ClientId} disconnected ({Type}); session kept: {Persistent}")]
    private static partial void LogDisconnected(ILogger logger, long number, Untrusted clientId, MQTTnet.Server.MqttClientDisconnectType type, bool persistent);

    [LoggerMessage(EventId = 2805, Level = LogLevel.Warning, Message = "MQTT connection {Number}: client {ClientId}'s durable filter {Filter} could not resume: {Refusal}")]
    private static partial void LogDurableResumeFailed(ILogger logger, long number, Untrusted clientId, Untrusted filter, string refusal);
}
