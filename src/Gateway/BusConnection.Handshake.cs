using DaemonEye.Gateway.Rpc;
using DaemonEye.Logging;
using DaemonEye.Protocol;
using DaemonEye.Protocol.V1;
using ErrorCode = DaemonEye.Protocol.V1.ErrorCode;

namespace DaemonEye.Gateway;

/// <summary>The handshake: Hello in, access decided, Welcome out (and any RPC request that was routed here first).</summary>
internal sealed partial class BusConnection
{
    // A collector is registered (and its presence announced) before its Welcome is queued, so a request
    // routed to it in between (the task coordinator dispatches as soon as an instance appears) waits
    // here and is queued right after the Welcome: a client never sees a request before its Welcome.
    private readonly Lock _welcomeGate = new();
    private volatile bool _welcomeQueued;
    private List<RpcRequest>? _early;

    private bool Handshake(Envelope envelope)
    {
        if (envelope.BodyCase != Envelope.BodyOneofCase.Hello)
        {
            Fatal(ErrorCode.HandshakeRequired, $"the first frame must be Hello; got {(envelope.BodyCase == Envelope.BodyOneofCase.None ? "an envelope with no body" : envelope.BodyCase.ToString())}", envelope.RequestId);
            return false;
        }

        var hello = envelope.Hello;
        if (hello.ProtocolVersion != ProtocolConstants.Version)
        {
            Fatal(ErrorCode.UnsupportedVersion, $"protocol version {hello.ProtocolVersion} is not supported; this agent speaks version {ProtocolConstants.Version}", envelope.RequestId);
            return false;
        }

        if (hello.ClientId.Length is 0 or > ProtocolConstants.MaxClientIdLength)
        {
            Fatal(ErrorCode.HandshakeRequired, $"hello.client_id must be 1 to {ProtocolConstants.MaxClientIdLength} characters; got {hello.ClientId.Length}", envelope.RequestId);
            return false;
        }

        // Kept escaped: the id appears in log lines, health reports and RPC errors. A collector's id is
        // checked against the configuration (spawned) or the token map, whose ids need no escaping.
        _clientId = LogText.Escape(hello.ClientId);
        var decision = _access.Decide(hello, _peer, Id);
        if (decision.Policy is null)
        {
            Fatal(ErrorCode.NotAuthorized, decision.Refusal!, envelope.RequestId);
            return false;
        }

        _policy = decision.Policy;
        var role = _policy.Role;
        var (granted, refused) = Security.CapabilityNegotiation.Negotiate(hello, _policy);
        if (role == Role.Collector)
        {
            _rpc.Directory.Negotiated(_clientId, granted, [.. refused.Select(r => new Collectors.RefusedCapability(r.Capability, r.Reason))]);
            var presence = new CollectorPresence(_clientId, Id, _peer?.Pid ?? 0, _peer?.Uid ?? uint.MaxValue, granted);
            if (!_rpc.TryRegisterCollector(this, presence, out var conflict))
            {
                Fatal(ErrorCode.Conflict, conflict!, envelope.RequestId);
                return false;
            }

            _heartbeatTopic = HeartbeatTopicPrefix + _clientId;
        }

        _welcomed = true;
        _deadlines.Welcomed();
        _directory.Add(this);
        QueueControl(Framing.ToFrame(new Envelope
        {
            RequestId = envelope.RequestId,
            Welcome = new Welcome
            {
                ProtocolVersion = ProtocolConstants.Version,
                ConnectionId = $"c{Id}",
                AgentVersion = AgentInfo.Version,
                MaxFrameSize = (uint)_maxFrameSize,
                MessageBufferSize = (uint)_capacity,
                Role = role,
                Granted = { granted },
                Refused = { refused },
            },
        }));
        lock (_welcomeGate)
        {
            foreach (var request in _early ?? [])
            {
                QueueControl(Framing.ToFrame(new Envelope { RpcRequest = request }));
            }

            _early = null;
            _welcomeQueued = true;
        }

        LogWelcomed(_logger, Id, _clientId, role, hello.ClientVersion, _peer?.Pid ?? 0, _peer?.Uid ?? uint.MaxValue);
        foreach (var refusal in refused)
        {
            LogCapabilityRefused(_logger, Id, _clientId, refusal.Capability, refusal.Reason);
        }

        return true;
    }

    [Microsoft.Extensions.Logging.LoggerMessage(EventId = 2310, Level = Microsoft.Extensions.Logging.LogLevel.Warning, Message = "Connection {ConnectionId} ({ClientId}): capability {Capability} refused: {Reason}")]
    private static partial void LogCapabilityRefused(Microsoft.Extensions.Logging.ILogger logger, long connectionId, string clientId, Untrusted capability, string reason);
}
