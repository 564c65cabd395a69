using DaemonEye.Protocol.Collector.V1;
using DaemonEye.Protocol.V1;
using Google.Protobuf;

namespace DaemonEye.Gateway.Security;

/// <summary>
/// Every RPC operation with the access it needs, the bus's counterpart of <see cref="IpcOperations"/>
/// and classified the same way: reading a collector is open to every caller that may make calls;
/// operating one (lifecycle, configuration, work) needs the operator, as on IPC.
/// </summary>
public static class RpcOperations
{
    /// <summary>What any caller allowed RPC calls may do, for the refusal message.</summary>
    public const string ReaderMay = "HealthCheck, GetCapabilities, UpdateConfig without settings (reads them)";

    /// <summary>What needs an operator, for the refusal message.</summary>
    public const string OperatorOnly = "Start, Stop, Restart, UpdateConfig with settings and ExecuteTask";

    /// <summary>The access <paramref name="request"/> needs; <see cref="IpcAccess.Operate"/> for anything not classified.</summary>
    public static IpcAccess Required(RpcRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        return request.Operation switch
        {
            RpcOperation.HealthCheck or RpcOperation.GetCapabilities => IpcAccess.Read,
            RpcOperation.UpdateConfig => ChangesSettings(request.Payload) ? IpcAccess.Operate : IpcAccess.Read,
            _ => IpcAccess.Operate,
        };
    }

    /// <summary>An UpdateConfig payload that names at least one setting (or cannot be read: then it counts as a change).</summary>
    public static bool ChangesSettings(ByteString payload)
    {
        try
        {
            return UpdateConfigRequest.Parser.ParseFrom(payload).Settings.Count > 0;
        }
        catch (InvalidProtocolBufferException)
        {
            return true;
        }
    }
}
