using System.Security.Cryptography;
using System.Text;
using DaemonEye.Configuration;
using DaemonEye.Hosting;
using DaemonEye.Logging;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.V1;
using DaemonEye.Topics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DaemonEye.Gateway.Security;

/// <summary>The outcome of a handshake's access decision: a policy, or the rule that refused it.</summary>
internal readonly record struct HandshakeDecision(AccessPolicy? Policy, AccessRule Rule, string? Refusal);

/// <summary>
/// Who may connect and what each connection may do. On accept: the peer's credentials
/// (SO_PEERCRED) against the agent's uid, root, <c>security.allowed_uids</c> and
/// <c>security.allowed_gids</c>. At the handshake: the role granted and the connection's
/// <see cref="AccessPolicy"/>, computed once so that later checks are a field read.
/// </summary>
internal sealed partial class AccessControl
{
    private const string EventsDomain = WellKnownTopics.AllEvents;
    private readonly SecurityOptions _options;
    private readonly SpawnedCollectors _spawned;
    private readonly GatewayStatistics _stats;
    private readonly ILogger<AccessControl> _logger;
    private readonly HashSet<uint> _allowedUids;
    private readonly HashSet<uint> _allowedGids;
    private readonly Dictionary<string, byte[]> _tokens;
    private readonly HashSet<string> _collectorCallers;
    private readonly Role _otherUidRole;
    private readonly string _allowedSummary;
    private readonly LogRateLimiter _refusalLog;

    public AccessControl(IOptions<SecurityOptions> options, SpawnedCollectors spawned, GatewayStatistics stats, ILogger<AccessControl> logger, TimeProvider? time = null)
    {
        _refusalLog = new LogRateLimiter(time ?? TimeProvider.System, 20, TimeSpan.FromSeconds(10));
        _options = options.Value;
        _spawned = spawned;
        _stats = stats;
        _logger = logger;
        AgentUid = Posix.EffectiveUserId;
        _allowedUids = [.. _options.AllowedUidValues()];
        _allowedGids = [.. _options.AllowedGidValues()];
        _tokens = _options.RegistrationTokens.ToDictionary(t => t.Key, t => Encoding.UTF8.GetBytes(t.Value ?? string.Empty), StringComparer.Ordinal);
        _collectorCallers = new HashSet<string>(_options.CollectorCallers, StringComparer.Ordinal);
        _otherUidRole = string.Equals(_options.OtherUidRole, "client", StringComparison.OrdinalIgnoreCase) ? Role.Client : Role.Subscriber;
        _allowedSummary = $"allowed: the agent's uid {AgentUid}, root, security.allowed_uids [{string.Join(", ", _allowedUids.Order())}] and members of security.allowed_gids [{string.Join(", ", _allowedGids.Order())}]";
    }

    public uint AgentUid { get; }

    /// <summary>The agent's own user or root: may take any role it asks for.</summary>
    public bool IsTrusted(PeerCredentials? peer) => peer is { } p && (p.Uid == AgentUid || p.Uid == 0);

    /// <summary>
    /// Decides whether the peer may use the socket at all. Refusals are counted and logged with the
    /// peer's pid and uid; <paramref name="refusal"/> is the message to send it. The MQTT socket admits
    /// the same peers as the bus socket (<paramref name="socket"/> names it in the refusal; counted as bus).
    /// </summary>
    public bool AdmitPeer(PeerCredentials? peer, bool ipc, out string? refusal, string? socket = null)
    {
        socket ??= ipc ? "IPC" : "bus";
        refusal = null;
        if (peer is { } p)
        {
            if (p.Uid == AgentUid || p.Uid == 0 || _allowedUids.Contains(p.Uid) || _allowedGids.Contains(p.Gid))
            {
                return true;
            }

            if (_allowedGids.Count > 0)
            {
                foreach (var gid in Posix.SupplementaryGroups(p.Pid))
                {
                    if (_allowedGids.Contains(gid))
                    {
                        return true;
                    }
                }
            }

            refusal = $"uid {p.Uid} (pid {p.Pid}, gid {p.Gid}) may not use the agent's {socket} socket; {_allowedSummary}";
        }
        else
        {
            refusal = $"the kernel did not report this peer's credentials (SO_PEERCRED), so it cannot be authorised; {_allowedSummary}";
        }

        _stats.AddPeerRefused(ipc);
        // A refused peer may reconnect in a loop: its refusals are all counted, their lines budgeted.
        if (_refusalLog.TryAcquire(out var suppressed))
        {
            if (suppressed > 0)
            {
                LogPeerRefusalsSuppressed(_logger, suppressed, _refusalLog.PerWindow, _refusalLog.Window.TotalSeconds);
            }

            LogPeerRefused(_logger, socket, peer?.Pid ?? 0, peer?.Uid ?? uint.MaxValue, peer?.Gid ?? uint.MaxValue);
        }
        return false;
    }

    /// <summary>
    /// The IPC caller on connection <paramref name="connectionId"/>: <see cref="IpcRole.Operator"/> for the
    /// agent's user and root, <see cref="IpcRole.Reader"/> for every other admitted peer
    /// (<c>security.allowed_uids</c>, <c>security.allowed_gids</c>), whatever <c>security.other_uid_role</c>
    /// grants it on the bus: operating the agent is not delegated by configuration.
    /// </summary>
    public IpcCaller IpcCallerFor(PeerCredentials? peer, long connectionId) =>
        new(connectionId, peer, IsTrusted(peer) ? IpcRole.Operator : IpcRole.Reader);

    /// <summary>
    /// Null when <paramref name="caller"/>'s role allows <paramref name="request"/> (<see cref="IpcOperations"/>);
    /// otherwise the refusal to answer with (NOT_AUTHORIZED), naming the operation, the caller's uid and
    /// role and the role needed. Refusals are counted (rule <c>ipc.operate</c>) and logged: the first of a
    /// connection as a warning, the rest at debug.
    /// </summary>
    public string? AuthorizeIpc(IpcCaller caller, IpcRequest request)
    {
        if (caller.Role == IpcRole.Operator || IpcOperations.Required(request) == IpcAccess.Read)
        {
            return null;
        }

        _stats.AddDenied(AccessRule.IpcOperate);
        var operation = IpcOperations.Name(request);
        var pid = caller.Peer?.Pid ?? 0;
        var uid = caller.Peer?.Uid ?? uint.MaxValue;
        if (caller.FirstDenial())
        {
            LogIpcDenied(_logger, caller.ConnectionId, operation, pid, uid, caller.Role, IpcRole.Operator);
        }
        else
        {
            LogIpcDeniedAgain(_logger, caller.ConnectionId, operation, pid, uid);
        }

        var target = request.BodyCase == IpcRequest.BodyOneofCase.CollectorCommand ? $" '{request.CollectorCommand.Id}'" : string.Empty;
        return $"{operation}{target} refused by rule {AccessRules.Name(AccessRule.IpcOperate)}: uid {uid} (pid {pid}) has the IPC role reader, which may only read ({IpcOperations.ReaderMay}); " +
            $"{operation} needs the operator role, which only the agent's user (uid {AgentUid}) and root have ({IpcOperations.OperatorOnly})";
    }

    /// <summary>The role and policy for a Hello, or the rule that refuses it (the caller sends a fatal NOT_AUTHORIZED).</summary>
    public HandshakeDecision Decide(Hello hello, PeerCredentials? peer, long connectionId)
    {
        var requested = hello.Role == Role.Unspecified ? Role.Client : hello.Role;
        if (requested == Role.Collector)
        {
            return DecideCollector(hello, peer, connectionId);
        }

        var granted = requested;
        var trusted = IsTrusted(peer);
        if (!trusted && requested is Role.Cli or Role.Client)
        {
            granted = _otherUidRole;
            LogRoleLimited(_logger, connectionId, hello.ClientId, requested, granted, peer?.Uid ?? uint.MaxValue, AgentUid);
        }

        return new HandshakeDecision(granted switch
        {
            Role.Cli => AccessPolicy.Cli(trusted),
            Role.Subscriber => AccessPolicy.Subscriber(),
            _ => AccessPolicy.Client(trusted),
        }, default, null);
    }

    private HandshakeDecision DecideCollector(Hello hello, PeerCredentials? peer, long connectionId)
    {
        var id = hello.ClientId;
        var pid = peer?.Pid ?? 0;
        string how;
        if (_spawned.IsSpawned(id, pid))
        {
            how = "started by this agent (pid matches)";
        }
        else if (_tokens.TryGetValue(id, out var expected) && hello.RegistrationToken.Length > 0
                 && CryptographicOperations.FixedTimeEquals(expected, Encoding.UTF8.GetBytes(hello.RegistrationToken)))
        {
            how = "registration token";
        }
        else
        {
            var problem = hello.RegistrationToken.Length == 0
                ? "presented no registration token"
                : _tokens.ContainsKey(id) ? "presented a wrong registration token" : $"presented a token, but security.registration_tokens has none for '{id}'";
            return Refuse(AccessRule.CollectorAuthentication, connectionId, id, peer,
                $"collector '{id}' (pid {pid}) was not started by this agent and {problem}; a collector started outside the agent needs security.registration_tokens.{id} in the agent's configuration and the same token in Hello.registration_token (the SDK reads DAEMONEYE_REGISTRATION_TOKEN)");
        }

        var publish = new List<string>();
        foreach (var capability in hello.Capabilities)
        {
            if (!capability.StartsWith("publish:", StringComparison.Ordinal))
            {
                continue;
            }

            var pattern = capability["publish:".Length..];
            var validation = TopicRules.ValidatePattern(pattern);
            if (!validation.IsValid || !TopicRules.Covers(EventsDomain, pattern))
            {
                return Refuse(AccessRule.CollectorDeclaredPublish, connectionId, id, peer,
                    $"collector '{id}' declared capability '{capability}': {(validation.IsValid ? "a collector may declare publish patterns only under events.# (control topics belong to the agent)" : validation.Error)}");
            }

            publish.Add(pattern);
        }

        var domains = publish.Count == 0 ? "(none)" : string.Join(", ", publish);
        LogCollectorAuthenticated(_logger, connectionId, id, pid, how, domains);
        return new HandshakeDecision(AccessPolicy.Collector(id, publish, caller: _collectorCallers.Contains(id)), default, null);
    }

    private HandshakeDecision Refuse(AccessRule rule, long connectionId, string clientId, PeerCredentials? peer, string message)
    {
        Denied(rule, connectionId, clientId, peer, message);
        return new HandshakeDecision(null, rule, $"refused by rule {AccessRules.Name(rule)}: {message}");
    }

    /// <summary>Counts and logs a denial. The first denial of each rule on a connection is a warning, the rest debug.</summary>
    public void Denied(AccessRule rule, long connectionId, string clientId, PeerCredentials? peer, string detail, AccessPolicy? policy = null)
    {
        _stats.AddDenied(rule);
        var name = AccessRules.Name(rule);
        if (policy is null || policy.FirstDenial(rule))
        {
            LogDenied(_logger, connectionId, clientId, name, peer?.Pid ?? 0, peer?.Uid ?? uint.MaxValue, detail);
        }
        else
        {
            LogDeniedAgain(_logger, connectionId, clientId, name, detail);
        }
    }

    [LoggerMessage(EventId = 2300, Level = LogLevel.Warning, Message = "Refused a connection to the {Socket} socket from pid {Pid} uid {Uid} gid {Gid}: not the agent's user, root, an allowed uid or a member of an allowed gid")]
    private static partial void LogPeerRefused(ILogger logger, string socket, int pid, uint uid, uint gid);

    [LoggerMessage(EventId = 2309, Level = LogLevel.Warning, Message = "{Suppressed} further refused connections were not logged (at most {Max} per {Seconds} s); peers_refused_bus/ipc in daemoneye-cli status count every one")]
    private static partial void LogPeerRefusalsSuppressed(ILogger logger, long suppressed, int max, double seconds);

    [LoggerMessage(EventId = 2301, Level = LogLevel.Warning, Message = "Connection {ConnectionId} ({ClientId}) denied by rule {Rule} (pid {Pid}, uid {Uid}): {Detail}")]
    private static partial void LogDenied(ILogger logger, long connectionId, Untrusted clientId, string rule, int pid, uint uid, Untrusted detail);

    [LoggerMessage(EventId = 2302, Level = LogLevel.Debug, Message = "Connection {ConnectionId} ({ClientId}) denied again by rule {Rule}: {Detail}")]
    private static partial void LogDeniedAgain(ILogger logger, long connectionId, Untrusted clientId, string rule, Untrusted detail);

    [LoggerMessage(EventId = 2303, Level = LogLevel.Information, Message = "Connection {ConnectionId} ({ClientId}) asked for role {Requested} but uid {Uid} is not the agent's ({AgentUid}) or root: granted {Granted} (security.other_uid_role)")]
    private static partial void LogRoleLimited(ILogger logger, long connectionId, Untrusted clientId, Role requested, Role granted, uint uid, uint agentUid);

    [LoggerMessage(EventId = 2304, Level = LogLevel.Information, Message = "Connection {ConnectionId}: collector {CollectorId} (pid {Pid}) authenticated by {How}; publishes on {Domains}")]
    private static partial void LogCollectorAuthenticated(ILogger logger, long connectionId, string collectorId, int pid, string how, string domains);

    [LoggerMessage(EventId = 2305, Level = LogLevel.Warning, Message = "IPC connection {ConnectionId}: {Operation} refused by rule ipc.operate to pid {Pid} uid {Uid}: its IPC role is {Role}, the operation needs {Required}")]
    private static partial void LogIpcDenied(ILogger logger, long connectionId, string operation, int pid, uint uid, IpcRole role, IpcRole required);

    [LoggerMessage(EventId = 2306, Level = LogLevel.Debug, Message = "IPC connection {ConnectionId}: {Operation} refused again by rule ipc.operate to pid {Pid} uid {Uid}")]
    private static partial void LogIpcDeniedAgain(ILogger logger, long connectionId, string operation, int pid, uint uid);
}
