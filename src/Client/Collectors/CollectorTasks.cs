using DaemonEye.Protocol.Task.V1;
using DaemonEye.Protocol.V1;
using Google.Protobuf;
using Microsoft.Extensions.DependencyInjection;

namespace DaemonEye.Client;

/// <summary>Executes one task of a declared type; returns the result payload (any protobuf message).</summary>
public delegate ValueTask<IMessage> CollectorTaskHandler(TaskRequest task, CollectorCall call, CancellationToken cancellationToken);

public sealed partial class CollectorBuilder
{
    private CollectorTaskDispatcher? _tasks;

    /// <summary>
    /// Executes tasks of <paramref name="taskType"/> (RPC_OPERATION_EXECUTE_TASK with a
    /// <see cref="TaskRequest"/> payload) and declares the type in Hello (<c>task:&lt;type&gt;</c>).
    /// The answer is a <see cref="TaskResult"/> carrying the task id, the collector id, a per-collector
    /// sequence from 1, the payload's full protobuf type name and its bytes. A task of a type with no
    /// handler answers InvalidOperation naming the types this collector executes.
    /// </summary>
    public CollectorBuilder HandleTask(string taskType, CollectorTaskHandler handler)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(taskType);
        ArgumentNullException.ThrowIfNull(handler);
        if (_tasks is null)
        {
            _tasks = new CollectorTaskDispatcher();
            Handle(RpcOperation.ExecuteTask, _tasks.ExecuteAsync);
        }

        if (!_tasks.Handlers.TryAdd(taskType, handler))
        {
            throw new ArgumentException($"task type '{taskType}' already has a handler", nameof(taskType));
        }

        Services.Configure<CollectorOptions>(o =>
        {
            if (!o.TaskTypes.Contains(taskType))
            {
                o.TaskTypes.Add(taskType);
            }
        });
        return this;
    }
}

/// <summary>Routes ExecuteTask calls to the handler of their task type and wraps the result.</summary>
internal sealed class CollectorTaskDispatcher
{
    private long _sequence;

    public Dictionary<string, CollectorTaskHandler> Handlers { get; } = new(StringComparer.Ordinal);

    public async ValueTask<ByteString> ExecuteAsync(CollectorCall call, CancellationToken cancellationToken)
    {
        var task = call.Payload(TaskRequest.Parser);
        if (!Handlers.TryGetValue(task.TaskType, out var handler))
        {
            var known = string.Join(", ", Handlers.Keys.Order(StringComparer.Ordinal));
            throw new CollectorRpcException(
                RpcErrorKind.InvalidOperation,
                $"collector '{call.Collector.CollectorId}' does not execute task type '{task.TaskType}'; it executes: {known}");
        }

        var payload = await handler(task, call, cancellationToken).ConfigureAwait(false);
        var result = new TaskResult
        {
            TaskId = task.TaskId,
            CollectorId = call.Collector.CollectorId,
            Sequence = (ulong)Interlocked.Increment(ref _sequence),
            PayloadType = payload.Descriptor.FullName,
            Payload = payload.ToByteString(),
        };
        return result.ToByteString();
    }
}
