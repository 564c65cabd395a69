using System.Globalization;
using DaemonEye.Configuration;
using DaemonEye.Gateway;
using DaemonEye.Gateway.Collectors;
using DaemonEye.Gateway.Rpc;
using DaemonEye.Logging;
using DaemonEye.Protocol.Task.V1;
using DaemonEye.Protocol.V1;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DaemonEye.Coordination;

/// <summary>
/// The agent's task distribution, composed of the parts a newcomer finds by name: a task becomes a
/// <see cref="TaskRun"/> with one <see cref="Assignment"/> per collector type whose connected instances
/// declare <c>task:&lt;type&gt;</c>; assignments wait in the <see cref="AssignmentQueue"/> (priority,
/// then arrival; bounded); the <see cref="InstancePicker"/> chooses a healthy instance with spare
/// capacity round-robin, reading instances and liveness from the collector directory; the
/// <see cref="TaskDispatcher"/> sends it as an RPC and reads the answer. This class holds the one lock
/// and moves assignments between them: an assignment whose instance fails (connection dropped, heartbeats
/// lost for three intervals, HealthCheck failing) goes back to the queue and on to another instance; the
/// first answer per assignment wins and a later one is a counted duplicate. At the task's timeout the
/// result completes as partial, naming the types that did not answer; a task that never reached any
/// instance fails with a clear error instead. Every task's announcement, assignments and outcome are
/// also published on <c>control.collector.task</c> (<see cref="TaskAnnouncer"/>).
/// </summary>
internal sealed partial class TaskCoordinator : ICollectorPresenceObserver, IDisposable
{
    private readonly Lock _gate = new();
    private readonly AssignmentQueue _queue;
    private readonly InstancePicker _picker;
    private readonly TaskDispatcher _dispatcher;
    private readonly TaskAnnouncer? _announcer;
    private readonly Dictionary<string, TaskRun> _live = new(StringComparer.Ordinal);
    private readonly TimeProvider _time;
    private readonly ILogger<TaskCoordinator> _logger;
    private readonly CoordinationOptions _options;
    private readonly TimeSpan _heartbeatInterval;
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
        ILogger<TaskCoordinator> logger,
        IBusPublisher? publisher = null)
    {
        _options = options.Value;
        _time = time;
        _logger = logger;
        _heartbeatInterval = processManager.Value.HeartbeatInterval;
        var configuredTypes = collectors.Value.Where(c => c.Id.Length > 0).ToDictionary(c => c.Id, c => c.EffectiveType, StringComparer.Ordinal);
        _queue = new AssignmentQueue(_options.MaxQueuedTasks);
        _picker = new InstancePicker(presence, configuredTypes, _options.DefaultCapacity);
        _dispatcher = new TaskDispatcher(rpc, time, logger);
        _announcer = publisher is null ? null : new TaskAnnouncer(publisher, logger);
        presence.Attach(this);
    }

    /// <summary>A collector instance connected or disconnected (what is offered may have changed). Raised on the caller's thread; must not block.</summary>
    public event Action? InstancesChanged;

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
            return [.. _picker.Instances().Where(i => i.TaskTypes.Contains(taskType)).Select(i => (i.Id, i.Type, i.Capacity, i.InFlight, i.Healthy))];
        }
    }

    /// <summary>The task types the connected instances execute (what rules may need).</summary>
    public IReadOnlySet<string> OfferedTaskTypes()
    {
        lock (_gate)
        {
            return _picker.Instances().SelectMany(i => i.TaskTypes).ToHashSet(StringComparer.Ordinal);
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
            var types = _picker.TypesOffering(spec.TaskType);
            if (types.Count == 0)
            {
                // Nobody offers the type yet: one assignment, bound to the type of whichever instance takes it.
                types.Add(string.Empty);
            }

            if (!_queue.HasRoomFor(types.Count))
            {
                Interlocked.Increment(ref _failed);
                throw new TaskFailedException(RpcErrorKind.ResourceExhausted,
                    $"coordination.max_queued_tasks ({_options.MaxQueuedTasks}) assignments are already waiting for a free collector instance; retry later or raise the limit");
            }

            foreach (var type in types)
            {
                var assignment = new Assignment(run, type.Length == 0 ? null : type, _queue.NextArrival());
                run.Assignments.Add(assignment);
                _queue.Enqueue(assignment);
            }

            _submitted++;
            _live[run.Id] = run;
            run.Timer = _time.CreateTimer(static state => ((TaskCoordinator)((object[])state!)[0]).OnDeadline((TaskRun)((object[])state!)[1]), new object[] { this, run }, timeout, Timeout.InfiniteTimeSpan);
            _announcer?.Announced(run);
            sends = PumpLocked();
        }

        LogSubmitted(_logger, run.Id, spec.TaskType, run.Assignments.Count, correlation.CorrelationId);
        Start(sends);
        return await run.Completion.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Hands every queued assignment that has a free instance to one. Call under the lock.</summary>
    private List<Attempt> PumpLocked() => _queue.Drain(assignment =>
    {
        var instance = _picker.Take(assignment.Run.Spec.TaskType, assignment.CollectorType);
        if (instance is null)
        {
            return null;
        }

        var attempt = new Attempt(assignment, instance);
        instance.Attempts.Add(attempt);
        assignment.Current = attempt;
        assignment.CollectorType ??= instance.Type;
        assignment.LastInstance = instance.Id;
        if (assignment.Attempts++ > 0)
        {
            assignment.Run.Redistributions++;
            _redistributions++;
        }

        assignment.Run.EverSent = true;
        _announcer?.Assigned(attempt);
        return attempt;
    });

    private void Start(List<Attempt> attempts)
    {
        foreach (var attempt in attempts)
        {
            _ = ExecuteAsync(attempt);
        }
    }

    private async Task ExecuteAsync(Attempt attempt)
    {
        var outcome = await _dispatcher.SendAsync(attempt).ConfigureAwait(false);
        OnAttemptCompleted(attempt, outcome);
    }

    private void OnAttemptCompleted(Attempt attempt, AttemptOutcome outcome)
    {
        var assignment = attempt.Assignment;
        var run = assignment.Run;
        var instance = attempt.Instance;
        var (result, error) = outcome;
        List<Attempt> sends;
        AggregatedTaskResult? completed = null;
        var late = false;
        lock (_gate)
        {
            _picker.Release(attempt);
            if (run.Done)
            {
                if (result is not null)
                {
                    late = true;
                    _lateResults++;
                }
            }
            else if (result is not null)
            {
                _queue.Remove(assignment);
                run.Answered(assignment, result, instance.Id);
                _announcer?.Answered(attempt, result, _time.GetElapsedTime(run.Started));
            }
            else if (!assignment.Resolved && ReferenceEquals(assignment.Current, attempt))
            {
                switch (error!.Kind)
                {
                    case RpcErrorKind.CommunicationError or RpcErrorKind.NotFound:
                        // The instance went away with the task: another instance of the type takes it.
                        assignment.Current = null;
                        assignment.LastFailure = $"instance '{instance.Id}': {error.Message}";
                        _queue.Enqueue(assignment);
                        break;
                    case RpcErrorKind.Timeout:
                        // The task's own deadline; OnDeadline completes it.
                        assignment.LastFailure = $"instance '{instance.Id}' did not answer within {run.Timeout.TotalSeconds:0.###} s";
                        break;
                    default:
                        assignment.Resolved = true;
                        assignment.Current = null;
                        assignment.Failure = $"instance '{instance.Id}' failed: {error.Kind}: {error.Message}";
                        break;
                }

                _announcer?.AttemptFailed(attempt, error.Kind switch
                {
                    RpcErrorKind.CommunicationError or RpcErrorKind.NotFound => $"{error.Kind}: {error.Message}; queued again for another instance of type '{instance.Type}'",
                    _ => $"{error.Kind}: {error.Message}",
                }, _time.GetElapsedTime(run.Started));
            }

            if (!run.Done && run.AllResolved)
            {
                completed = CompleteLocked(run, timedOut: false);
            }

            sends = PumpLocked();
        }

        if (late)
        {
            LogLate(_logger, run.Id, instance.Id);
        }

        if (completed is not null)
        {
            run.Completion.TrySetResult(completed);
        }

        Start(sends);
    }

    private void OnDeadline(TaskRun run)
    {
        // A timer may fire up to a millisecond early (the runtime's timers count whole milliseconds of
        // another clock): a task never completes before its timeout, so a timer that did is set again.
        var early = run.Timeout - _time.GetElapsedTime(run.Started);
        if (early > TimeSpan.Zero && run.Timer is { } timer)
        {
            timer.Change(TimeSpan.FromMilliseconds(Math.Ceiling(early.TotalMilliseconds)), Timeout.InfiniteTimeSpan);
            return;
        }

        AggregatedTaskResult? completed = null;
        TaskFailedException? failure = null;
        List<Attempt> sends;
        lock (_gate)
        {
            if (run.Done)
            {
                return;
            }

            foreach (var assignment in run.Assignments)
            {
                _queue.Remove(assignment);
            }

            if (!run.EverSent)
            {
                run.Abandon();
                _live.Remove(run.Id);
                _failed++;
                failure = new TaskFailedException(RpcErrorKind.Timeout, NoInstanceMessageLocked(run));
                _announcer?.Failed(run, failure.Message);
            }
            else
            {
                completed = CompleteLocked(run, timedOut: true);
            }

            sends = PumpLocked();
        }

        run.Timer?.Dispose();
        if (failure is not null)
        {
            LogFailed(_logger, run.Id, failure.Message);
            run.Completion.TrySetException(failure);
        }
        else
        {
            run.Completion.TrySetResult(completed!);
        }

        Start(sends);
    }

    private string NoInstanceMessageLocked(TaskRun run)
    {
        var type = run.Spec.TaskType;
        var instances = _picker.Instances();
        var offering = instances.Where(i => i.TaskTypes.Contains(type)).ToList();
        var seconds = run.Timeout.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture);
        if (offering.Count == 0)
        {
            var connected = instances.Count == 0 ? "no collectors are connected" : "connected collectors: " + string.Join(", ", instances.Select(i => $"{i.Id} (tasks: {(i.TaskTypes.Count == 0 ? "none" : string.Join(' ', i.TaskTypes.Order(StringComparer.Ordinal)))})"));
            return $"no collector instance executing task type '{type}' became available within {seconds} s; {connected}";
        }

        return $"no instance executing task type '{type}' had a free slot within {seconds} s: " +
            string.Join(", ", offering.Select(i => $"{i.Id} ({(i.Healthy ? "healthy" : "unhealthy")}, {i.InFlight}/{i.Capacity} in flight)"));
    }

    private AggregatedTaskResult CompleteLocked(TaskRun run, bool timedOut)
    {
        _live.Remove(run.Id);
        var aggregated = run.Complete(_time.GetElapsedTime(run.Started));
        _announcer?.Completed(run, aggregated);
        if (aggregated.Partial)
        {
            _partial++;
        }

        _completed++;
        if (!timedOut)
        {
            run.Timer?.Dispose();
        }

        return aggregated;
    }

    public void Dispose()
    {
        List<TaskRun> live;
        lock (_gate)
        {
            live = [.. _live.Values];
            _live.Clear();
            _queue.Clear();
        }

        _announcer?.Complete();

        foreach (var run in live)
        {
            run.Timer?.Dispose();
            run.Completion.TrySetException(new TaskFailedException(RpcErrorKind.ExecutionError, "the agent is shutting down"));
        }
    }

    [LoggerMessage(EventId = 5000, Level = LogLevel.Debug, Message = "Task {TaskId} ({TaskType}) submitted: {Assignments} assignment(s), correlation {CorrelationId}")]
    private static partial void LogSubmitted(ILogger logger, string taskId, Untrusted taskType, int assignments, Untrusted correlationId);

    [LoggerMessage(EventId = 5005, Level = LogLevel.Information, Message = "Task {TaskId}: a result from {InstanceId} came after the task completed; discarded (counted as a late result)")]
    private static partial void LogLate(ILogger logger, string taskId, string instanceId);

    [LoggerMessage(EventId = 5006, Level = LogLevel.Warning, Message = "Task {TaskId} failed: {Reason}")]
    private static partial void LogFailed(ILogger logger, string taskId, Untrusted reason);
}
