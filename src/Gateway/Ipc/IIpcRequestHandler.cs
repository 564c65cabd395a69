using DaemonEye.Protocol.Ipc.V1;

namespace DaemonEye.Gateway.Ipc;

/// <summary>
/// Serves IPC request kinds the gateway itself does not know (task runs, detection rules), so
/// components above the gateway add IPC operations without the gateway referencing them.
/// Register with <c>services.AddSingleton&lt;IIpcRequestHandler, ...&gt;()</c>.
/// </summary>
public interface IIpcRequestHandler
{
    /// <summary>The request kinds this handler answers.</summary>
    IReadOnlyCollection<IpcRequest.BodyOneofCase> Handles { get; }

    /// <summary>Answers one request; an error goes in <see cref="IpcResponse.Error"/>, never as an exception.</summary>
    Task<IpcResponse> HandleAsync(IpcRequest request, CancellationToken cancellationToken);
}
