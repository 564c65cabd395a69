using DaemonEye.Protocol.V1;

namespace DaemonEye.Coordination;

/// <summary>What to run: a task type, its parameters, its priority and timeout (null: the default).</summary>
public sealed record TaskSpec(string TaskType, IReadOnlyDictionary<string, string> Parameters, int Priority = 0, TimeSpan? Timeout = null);

/// <summary>A task that could not run at all (no instance before its timeout, queue full, bad request).</summary>
public sealed class TaskFailedException(RpcErrorKind kind, string message) : Exception(message)
{
    public RpcErrorKind Kind { get; } = kind;
}

/// <summary>Counters of the coordinator.</summary>
public sealed record CoordinationStatistics(long Submitted, long Completed, long Partial, long Failed, long Redistributions, long LateResults, int Queued, int Running);
