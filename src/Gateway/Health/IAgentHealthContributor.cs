using DaemonEye.Protocol.Ipc.V1;

namespace DaemonEye.Gateway.Health;

/// <summary>
/// A health check a feature outside the gateway adds to <c>daemoneye-cli health</c> (coordination's
/// "rules": rules waiting for a collector). Registered as a singleton of this interface; evaluated on
/// every health request. Must be quick and must not throw.
/// </summary>
public interface IAgentHealthContributor
{
    Task<HealthCheckResult> CheckAsync(CancellationToken cancellationToken);
}
