using DaemonEye.Configuration;
using DaemonEye.Gateway.Collectors;
using DaemonEye.Gateway.Rpc;
using DaemonEye.Logging;
using DaemonEye.Protocol.Task.V1;
using DaemonEye.Protocol.V1;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

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

/// <summary>
/// The agent's task distribution. A task is split into one assignment per collector type whose
/// connected instances declare <c>task:&lt;type&gt;</c>; each assignment goes, as an
/// RPC_OPERATION_EXECUTE_TASK call, to one instance of its type chosen round-robin among the healthy
/// ones with spare capacity (in-flight &lt; declared <c>capacity:&lt;n&gt;</c>, never more). An
/// assignment whose instance fails (connection dropped: CommunicationError; heartbeats lost for three
/// intervals; the supervisor's periodic HealthCheck answered unhealthy or failed) goes back to the
/// queue and on to another instance; the first answer per assignment
/// wins and any later one is counted as a duplicate, so every assignment yields at most one result.
/// Assignments with no free instance wait in a bounded priority queue (priority, then arrival).
/// At the task's timeout the aggregated result completes as partial, naming the types that did not
/// answer; a task that never reached any instance fails with a clear error instead.
/// </summary>
internal sealed partial class TaskCoordinator : ICollectorPresenceObserver, IDisposable
{
    private readonly Lock _gate = new();
    private readonly Dictionary<string, Instance> _instances = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _cursors = new(StringComparer.Ordinal);
    private readonly SortedSet<Assignment> _queue = new(AssignmentOrder.Instance);
    private readonly Dictionary<string, TaskRun> _live = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _configuredTypes;
    private readonly IAgentRpc _rpc;
    private readonly TimeProvider _time;
    private readonly ILogger<TaskCoordinator> _logger;
    private readonly CoordinationOptions _options;
    private readonly TimeSpan _heartbeatInterval;
    private long _arrivals;
    private long _submitted;
    private long _completed;
    private long _partial;
    private long _failed;
    private long _redistributions;
    private long _lateResults;

    public TaskCoordinator(
        IOptions<CoordinationOptions> options,
        IOptions<ProcessManagerOptions> processManager,
        IOptions<List<CollectorDefinition>> collectors,
        IAgentRpc rpc,
        CollectorDirectory presence,
        TimeProvider time,
        ILogger<TaskCoordinator> logger)
    {
        _options = options.Value;
        _rpc = rpc;
        _time = time;
        _logger = logger;
        _heartbeatInterval = processManager.Value.HeartbeatInterval;
        _configuredTypes = collectors.Value.Where(c => c.Id.Length > 0).ToDictionary(c => c.Id, c => c.EffectiveType, StringComparer.Ordinal);
        presence.Attach(this);
    }

    public CoordinationStatistics Statistics
    {
        get
        {
            lock (_gate)
            {
                return new CoordinationStatistics(_submitted, _completed, _partial, _failed, _redistributions, _lateResults, _queue.Count, _live.Count);
            }
        }
    }

    /// <summary>Instance ids that execute <paramref name="taskType"/>, with their type, capacity and in-flight count.</summary>
    public IReadOnlyList<(string Id, string Type, int Capacity, int InFlight, bool Healthy)> InstancesFor(string taskType)
    {
        lock (_gate)
        {
            return [.. _instances.Values.Where(i => i.TaskTypes.Contains(taskType)).OrderBy(i => i.Id, StringComparer.Ordinal)
                .Select(i => (i.Id, i.Type, i.Capacity, i.InFlight, i.Healthy))];
        }
    }

    /// <summary>Runs one task to its aggregated result.</summary>
    /// <exception cref="TaskFailedException">Invalid request, queue full, or no instance before the timeout.</exception>
    public async Task<AggregatedTaskResult> RunAsync(TaskSpec spec, CorrelationMetadata? parent, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (spec.TaskType.Length is 0 or > 128 || spec.TaskType.Any(char.IsWhiteSpace))
        {
            throw new TaskFailedException(RpcErrorKind.InvalidOperation, $"task type '{spec.TaskType}' is invalid; allowed: 1 to 128 characters without spaces, e.g. process.snapshot");
        }

        var timeout = spec.Timeout ?? _options.DefaultTaskTimeout;
        if (timeout <= TimeSpan.Zero)
        {
            throw new TaskFailedException(RpcErrorKind.InvalidOperation, $"task timeout {timeout.TotalMilliseconds} ms is invalid; it must be positive");
        }

        var correlation = Correlation.ChildOf(parent);
        correlation.WorkflowStage = "task";
        var run = new TaskRun(Correlation.NewId(), spec, correlation, _time.GetUtcNow() + timeout, timeout, _time.GetTimestamp());
        List<Attempt> sends;
        lock (_gate)
        {
            var types = _instances.Values.Where(i => i.TaskTypes.Contains(spec.TaskType)).Select(i => i.Type).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
            if (types.Count == 0)
            {
                // Nobody offers the type yet: one assignment, bound to the type of whichever instance takes it.
                types.Add(string.Empty);
            }

            if (_queue.Count + types.Count > _options.MaxQueuedTasks)
            {
                Interlocked.Increment(ref _failed);
                throw new TaskFailedException(RpcErrorKind.ResourceExhausted,
                    $"coordination.max_queued_tasks ({_options.MaxQueuedTasks}) assignments are already waiting for a free collector instance; retry later or raise the limit");
            }

            foreach (var type in types)
            {
                var assignment = new Assignment(run, type.Length == 0 ? null : type, ++_arrivals);
                run.Assignments.Add(assignment);
                _queue.Add(assignment);
            }

            _submitted++;
            _live[run.Id] = run;
            run.Timer = _time.CreateTimer(static state => ((TaskCoordinator)((object[])state!)[0]).OnDeadline((TaskRun)((object[])state!)[1]), new object[] { this, run }, timeout, Timeout.InfiniteTimeSpan);
            sends = PumpLocked();
        }

        LogSubmitted(_logger, run.Id, spec.TaskType, run.Assignments.Count, correlation.CorrelationId);
        Start(sends);
        return await run.Completion.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    [LoggerMessage(EventId = 5000, Level = LogLevel.Debug, Message = "Task {TaskId} ({TaskType}) submitted: {Assignments} assignment(s), correlation {CorrelationId}")]
    private static partial void LogSubmitted(ILogger logger, string taskId, Untrusted taskType, int assignments, Untrusted correlationId);

    [LoggerMessage(EventId = 5001, Level = LogLevel.Debug, Message = "Task {TaskId} -> {InstanceId} (attempt {Attempt})")]
    private static partial void LogSent(ILogger logger, string taskId, string instanceId, int attempt);

    [LoggerMessage(EventId = 5002, Level = LogLevel.Information, Message = "Collector instance {InstanceId} (type {Type}, capacity {Capacity}) executes: {TaskTypes}")]
    private static partial void LogInstance(ILogger logger, string instanceId, string type, int capacity, Untrusted taskTypes);

    [LoggerMessage(EventId = 5003, Level = LogLevel.Warning, Message = "Collector instance {InstanceId} sent no heartbeat for {Seconds} s: unhealthy; its tasks move to other instances")]
    private static partial void LogUnhealthy(ILogger logger, string instanceId, double seconds);

    [LoggerMessage(EventId = 5004, Level = LogLevel.Information, Message = "Collector instance {InstanceId} {What}")]
    private static partial void LogRecovered(ILogger logger, string instanceId, string what);

    [LoggerMessage(EventId = 5007, Level = LogLevel.Warning, Message = "Collector instance {InstanceId} failed its health check: {Detail}; out of rotation, its tasks move to other instances")]
    private static partial void LogHealthCheckFailed(ILogger logger, string instanceId, Untrusted detail);

    [LoggerMessage(EventId = 5005, Level = LogLevel.Information, Message = "Task {TaskId}: a result from {InstanceId} came after the task completed; discarded (counted as a late result)")]
    private static partial void LogLate(ILogger logger, string taskId, string instanceId);

    [LoggerMessage(EventId = 5006, Level = LogLevel.Warning, Message = "Task {TaskId} failed: {Reason}")]
    private static partial void LogFailed(ILogger logger, string taskId, Untrusted reason);
}
