using DaemonEye.Gateway.Rpc;
using DaemonEye.Protocol.Task.V1;
using DaemonEye.Protocol.V1;
using Google.Protobuf;
using Microsoft.Extensions.Logging;

namespace DaemonEye.Coordination;

/// <summary>What one attempt came back with: a result, or the error that stands for it.</summary>
internal readonly record struct AttemptOutcome(TaskResult? Result, RpcError? Error);

/// <summary>
/// Sends one attempt to its instance as an RPC_OPERATION_EXECUTE_TASK call (point to point, under the
/// task's remaining time and as a child of its correlation) and reads the answer: a TaskResult for this
/// task, or an error (the call's own, or one saying why the answer is not usable). Never throws.
/// </summary>
internal sealed partial class TaskDispatcher(IAgentRpc rpc, TimeProvider time, ILogger logger)
{
    public async Task<AttemptOutcome> SendAsync(Attempt attempt)
    {
        var run = attempt.Assignment.Run;
        RpcResponse response;
        try
        {
            var remaining = run.Deadline - time.GetUtcNow();
            if (remaining <= TimeSpan.Zero)
            {
                response = new RpcResponse { Status = RpcStatus.Error, Error = new RpcError { Kind = RpcErrorKind.Timeout, Message = "the task's deadline passed before it was sent" } };
            }
            else
            {
                var request = new Protocol.Task.V1.TaskRequest { TaskId = run.Id, TaskType = run.Spec.TaskType, Priority = run.Spec.Priority };
                foreach (var (key, value) in run.Spec.Parameters)
                {
                    request.Parameters[key] = value;
                }

                LogSent(logger, run.Id, attempt.Instance.Id, attempt.Assignment.Attempts);
                response = await rpc.CallAsync(attempt.Instance.Id, RpcOperation.ExecuteTask, request.ToByteString(), remaining, run.Correlation).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            response = new RpcResponse { Status = RpcStatus.Error, Error = new RpcError { Kind = RpcErrorKind.ExecutionError, Message = $"sending the task failed: {ex.Message}" } };
        }

        return Read(run.Id, attempt.Instance.Id, response);
    }

    private static AttemptOutcome Read(string taskId, string instanceId, RpcResponse response)
    {
        if (response.Status != RpcStatus.Ok)
        {
            return new AttemptOutcome(null, response.Error ?? new RpcError { Kind = RpcErrorKind.Unspecified, Message = "the collector answered with an error and no detail" });
        }

        try
        {
            var result = TaskResult.Parser.ParseFrom(response.Payload);
            if (result.TaskId.Length > 0 && !string.Equals(result.TaskId, taskId, StringComparison.Ordinal))
            {
                return new AttemptOutcome(null, new RpcError { Kind = RpcErrorKind.ExecutionError, Message = $"collector '{instanceId}' answered task {taskId} with a result for task {result.TaskId}" });
            }

            return new AttemptOutcome(result, null);
        }
        catch (InvalidProtocolBufferException ex)
        {
            return new AttemptOutcome(null, new RpcError { Kind = RpcErrorKind.ExecutionError, Message = $"collector '{instanceId}' answered with a payload that is not a TaskResult: {ex.Message}" });
        }
    }

    [LoggerMessage(EventId = 5001, Level = LogLevel.Debug, Message = "Task {TaskId} -> {InstanceId} (attempt {Attempt})")]
    private static partial void LogSent(ILogger logger, string taskId, string instanceId, int attempt);
}
