using System.Buffers;
using DaemonEye.Gateway.Rpc;
using DaemonEye.Gateway.Security;
using DaemonEye.Protocol;
using DaemonEye.Protocol.V1;

namespace DaemonEye.Gateway;

/// <summary>RPC frames: authorized, routed on the reading thread, and corked per destination until the read is done.</summary>
internal sealed partial class BusConnection
{
    // Corking (see HandleRpc): the frames readers routed to this connection during their current
    // read, guarded by _sendGate; and, on the reading side, the connections this read corked for.
    private const int InitialCork = 4 * 1024;
    private const int MaxIdleCork = 256 * 1024;
    [ThreadStatic]
    private static BusConnection? t_corking;
    private ArrayBufferWriter<byte> _cork = new(InitialCork);
    private readonly List<BusConnection> _corkedFor = [];

    /// <summary>
    /// Routes an RPC frame on the reading thread. The frames it produces (the request for the callee,
    /// the answer for the caller, a refusal for this connection) are corked: collected per destination
    /// and sent by <see cref="SendCorked"/> once this read is done, so a read of many calls costs one
    /// send per destination rather than one per call.
    /// </summary>
    private void HandleRpc(Envelope envelope)
    {
        _io.RequestPoll(); // the answer is usually back within the busy-poll window
        t_corking = this;
        try
        {
            if (envelope.BodyCase == Envelope.BodyOneofCase.RpcRequest)
            {
                if (AuthorizeRpcRequest(envelope.RpcRequest))
                {
                    _rpc.HandleRequest(this, envelope.RpcRequest);
                }
            }
            else if (AuthorizeRpcResponse(envelope.RequestId, envelope.RpcResponse))
            {
                _rpc.HandleResponse(this, envelope.RpcResponse);
            }
        }
        finally
        {
            t_corking = null;
        }
    }

    /// <summary>Sends what this connection's read corked for each destination (see <see cref="HandleRpc"/>).</summary>
    private void SendCorked()
    {
        if (_corkedFor.Count == 0)
        {
            return;
        }

        foreach (var destination in _corkedFor)
        {
            destination.FlushCork();
        }

        _corkedFor.Clear();
    }

    /// <summary>
    /// The caller's role may make calls, an operating call (lifecycle, configuration, work: <see cref="RpcOperations"/>)
    /// comes from an operator as on IPC, and the call names itself validly; a refusal is answered at once.
    /// </summary>
    private bool AuthorizeRpcRequest(RpcRequest request)
    {
        if (_policy.RpcCallDenied is { } rule)
        {
            var message = $"RPC {request.Operation} to '{request.Target}' refused by rule {AccessRules.Name(rule)}: {_policy.Explain(rule)}";
            _access.Denied(rule, Id, _clientId, _peer, message, _policy);
            DeliverResponse(RpcRouter.Failure(request, RpcErrorKind.NotAuthorized, message));
            return false;
        }

        if (!_policy.Operates && RpcOperations.Required(request) == IpcAccess.Operate)
        {
            const AccessRule operate = AccessRule.RpcOperate;
            var message = $"RPC {request.Operation} to '{request.Target}' refused by rule {AccessRules.Name(operate)}: uid {_peer?.Uid.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "unknown"}: {_policy.Explain(operate)}";
            _access.Denied(operate, Id, _clientId, _peer, message, _policy);
            DeliverResponse(RpcRouter.Failure(request, RpcErrorKind.NotAuthorized, message));
            return false;
        }

        var correlation = request.Correlation;
        var problem = correlation is null || correlation.CorrelationId.Length == 0
            ? "correlation.correlation_id is empty; every RPC call needs an id"
            : CorrelationRules.Problem("correlation.correlation_id", correlation.CorrelationId)
              ?? CorrelationRules.Problem("correlation.parent_correlation_id", correlation.ParentCorrelationId)
              ?? CorrelationRules.Problem("correlation.root_correlation_id", correlation.RootCorrelationId);
        if (problem is not null)
        {
            _stats.AddLimitRefusal(Limit.CorrelationId);
            DeliverResponse(RpcRouter.Failure(request, RpcErrorKind.InvalidOperation, $"RPC {request.Operation} refused: {problem}"));
            return false;
        }

        return true;
    }

    /// <summary>Only the callee of a pending call may answer it.</summary>
    private bool AuthorizeRpcResponse(uint requestId, RpcResponse response)
    {
        var correlationId = response.Correlation?.CorrelationId ?? string.Empty;
        if (_policy.Role != Role.Collector || _rpc.IsAnsweredByAnother(correlationId, this))
        {
            Deny(AccessRule.RpcAnswer, requestId, $"RPC response '{correlationId}'");
            return false;
        }

        return true;
    }

    public void DeliverRequest(RpcRequest request)
    {
        if (!_welcomeQueued)
        {
            lock (_welcomeGate)
            {
                if (!_welcomeQueued)
                {
                    (_early ??= []).Add(request);
                    return;
                }
            }
        }

        SendOrEnqueue(new Envelope { RpcRequest = request });
    }

    public void DeliverResponse(RpcResponse response) => SendOrEnqueue(new Envelope { RpcResponse = response });

    private void SendOrEnqueue(Envelope envelope)
    {
        if (t_corking is { } reader)
        {
            lock (_sendGate)
            {
                if (_cork.WrittenCount == 0)
                {
                    reader._corkedFor.Add(this);
                }

                // Encoded straight into the cork: no frame array of its own.
                Framing.Write(_cork, envelope);
            }

            return;
        }

        var frame = Framing.ToFrame(envelope);
        lock (_sendGate)
        {
            SendLocked(frame, stable: true);
        }
    }

    /// <summary>Sends the frames corked for this connection: directly when its writer is idle, else through its queue.</summary>
    private void FlushCork()
    {
        lock (_sendGate)
        {
            if (_cork.WrittenCount == 0)
            {
                return;
            }

            SendLocked(_cork.WrittenMemory, stable: false);
            _cork.ResetWrittenCount();
            if (_cork.Capacity > MaxIdleCork)
            {
                _cork = new ArrayBufferWriter<byte>(InitialCork);
            }
        }
    }
}
