using DaemonEye.Gateway;
using DaemonEye.Gateway.Ipc;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.V1;

namespace DaemonEye.Supervision;

/// <summary>The IPC operation <c>collector_logs</c> (20): a configured collector's recent output.</summary>
internal sealed class CollectorLogsIpcHandler(CollectorOutputLog log, IAgentControl control) : IIpcRequestHandler
{
    public IReadOnlyCollection<IpcRequest.BodyOneofCase> Handles { get; } = [IpcRequest.BodyOneofCase.CollectorLogs];

    public async Task<IpcResponse> HandleAsync(IpcRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var id = request.CollectorLogs.Id;
        var known = (await control.ListCollectorsAsync(cancellationToken)).Select(c => c.Id).ToList();
        if (!known.Contains(id, StringComparer.Ordinal))
        {
            return new IpcResponse
            {
                Error = new RpcError
                {
                    Kind = RpcErrorKind.NotFound,
                    Message = $"no collector '{id}'; known: {(known.Count == 0 ? "none" : string.Join(", ", known.Order(StringComparer.Ordinal)))}",
                },
            };
        }

        return new IpcResponse { CollectorLogs = log.Read(id, request.CollectorLogs.MaxLines) };
    }
}
