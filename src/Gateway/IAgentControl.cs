using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.V1;

namespace DaemonEye.Gateway;

/// <summary>
/// What the IPC server asks of the agent's supervisor. Implemented in the supervision component;
/// defined here so the gateway (bytes) never references it.
/// </summary>
public interface IAgentControl
{
    Task<IReadOnlyList<CollectorStatus>> ListCollectorsAsync(CancellationToken cancellationToken);

    /// <summary>Runs a collector command; a failure comes back as an <see cref="RpcError"/>, never an exception.</summary>
    Task<(CollectorCommandResponse? Response, RpcError? Error)> ExecuteAsync(CollectorCommand command, CorrelationMetadata? parent, CancellationToken cancellationToken);
}
