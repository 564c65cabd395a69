using DaemonEye.Gateway.Rpc;
using DaemonEye.Protocol.V1;

namespace DaemonEye.Gateway.Collectors;

/// <summary>Lifecycle states of a collector.</summary>
public enum CollectorLifecycle
{
    Registered,
    Starting,
    Running,
    Stopping,
    Stopped,
    Failed,
}

/// <summary>Liveness as judged from heartbeats (<see cref="CollectorDirectory.Judge"/>).</summary>
public enum CollectorHealthState
{
    /// <summary>Not connected, so not judged.</summary>
    Unknown,
    Healthy,

    /// <summary>More than one heartbeat interval without a heartbeat.</summary>
    Degraded,

    /// <summary>Three heartbeat intervals without a heartbeat.</summary>
    Unhealthy,
}

/// <summary>A capability a collector declared at Hello that the agent did not grant, and why.</summary>
public sealed record RefusedCapability(string Capability, string Reason);

/// <summary>
/// Everything the agent knows about one collector at one moment (a copy: reading it takes no lock).
/// <c>Capabilities</c> is what the handshake granted, <c>Refused</c> what it refused and why;
/// <c>Supervised</c>: the agent starts it (it is in the configuration); <c>Presence</c>: the connection
/// that holds its id, null when it is not connected; <c>FailingHealthCheck</c>: why the last
/// HealthCheck failed, null when it passed or none ran.
/// </summary>
public sealed record CollectorSnapshot(
    string Id,
    CollectorLifecycle State,
    CollectorHealthState Health,
    int Pid,
    int Restarts,
    DateTimeOffset? LastHeartbeat,
    IReadOnlyList<string> Capabilities,
    IReadOnlyList<RefusedCapability> Refused,
    string Reason,
    DateTimeOffset StateSince,
    bool Supervised,
    bool Enabled,
    string Executable,
    CollectorPresence? Presence,
    string? FailingHealthCheck);

/// <summary>A lifecycle change: the snapshots before and after.</summary>
public sealed record CollectorTransition(CollectorSnapshot Before, CollectorSnapshot After);

/// <summary>
/// Executes collector lifecycle requests for every caller: the IPC commands and the RPC calls on the
/// bus reach the same implementation (the supervisor). Defined here so the gateway never references it.
/// </summary>
public interface ICollectorController
{
    /// <summary>
    /// Executes a Start, Stop (payload StopRequest) or Restart addressed to <paramref name="collectorId"/>
    /// and answers with a LifecycleResponse payload, or an error response (NotFound, InvalidOperation,
    /// ExecutionError); never throws for a failed request.
    /// </summary>
    Task<RpcResponse> ExecuteLifecycleAsync(string collectorId, RpcRequest request, CancellationToken cancellationToken);

    /// <summary>A collector accepted an UpdateConfig that changed settings (announce it). Must not block.</summary>
    void OnConfigurationApplied(string collectorId, RpcRequest request, RpcResponse response);
}
