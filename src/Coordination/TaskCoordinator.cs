using System.Globalization;
using DaemonEye.Configuration;
using DaemonEye.Gateway.Rpc;
using DaemonEye.Logging;
using DaemonEye.Protocol.Task.V1;
using DaemonEye.Protocol.V1;
using Google.Protobuf;
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
    private readonly ITimer _healthTimer;
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
        CollectorPresenceHub presence,
        TimeProvider time,
        ILogger<TaskCoordinator> logger)
    {
        _options = options.Value;
        _rpc = rpc;
        _time = time;
        _logger = logger;
        _heartbeatInterval = processManager.Value.HeartbeatInterval;
        _configuredTypes = collectors.Value.Where(c => c.Id.Length > 0).ToDictionary(c => c.Id, c => c.EffectiveType, StringComparer.Ordinal);
        _healthTimer = time.CreateTimer(_ => CheckHeartbeats(), null, _heartbeatInterval, _heartbeatInterval);
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

    // ----- presence -----

    public void OnCollectorConnected(CollectorPresence presence)
    {
        ArgumentNullException.ThrowIfNull(presence);
        var taskTypes = new HashSet<string>(StringComparer.Ordinal);
        var capacity = _options.DefaultCapacity;
        foreach (var capability in presence.Capabilities)
        {
            if (capability.StartsWith("task:", StringComparison.Ordinal) && capability.Length > 5)
            {
                taskTypes.Add(capability[5..]);
            }
            else if (capability.StartsWith("capacity:", StringComparison.Ordinal)
                && int.TryParse(capability.AsSpan(9), NumberStyles.None, CultureInfo.InvariantCulture, out var declared) && declared > 0)
            {
                capacity = declared;
            }
        }

        var type = _configuredTypes.TryGetValue(presence.CollectorId, out var configured) ? configured : presence.CollectorId;
        List<Attempt> sends;
        lock (_gate)
        {
            _instances[presence.CollectorId] = new Instance(presence.CollectorId, type, taskTypes, capacity, presence.ConnectionId, _time.GetTimestamp());
            sends = PumpLocked();
        }

        var executes = taskTypes.Count == 0 ? "no task types" : string.Join(' ', taskTypes.Order(StringComparer.Ordinal));
        LogInstance(_logger, presence.CollectorId, type, capacity, executes);
        Start(sends);
    }

    public void OnCollectorDisconnected(string collectorId, long connectionId)
    {
        lock (_gate)
        {
            // Its pending calls fail with CommunicationError from the router; that puts them back in the queue.
            if (_instances.TryGetValue(collectorId, out var instance) && instance.ConnectionId == connectionId)
            {
                _instances.Remove(collectorId);
            }
        }
    }

    public void OnCollectorHeartbeat(string collectorId)
    {
        List<Attempt>? sends = null;
        var stillFailing = false;
        lock (_gate)
        {
            if (_instances.TryGetValue(collectorId, out var instance))
            {
                instance.LastSeen = _time.GetTimestamp();
                if (instance.HeartbeatsLost)
                {
                    instance.HeartbeatsLost = false;
                    stillFailing = instance.HealthCheckFailing;
                    sends = PumpLocked();
                }
            }
        }

        if (sends is not null)
        {
            LogRecovered(_logger, collectorId, stillFailing ? "sends heartbeats again but still fails its health check: unhealthy" : "sends heartbeats again: healthy");
            Start(sends);
        }
    }

    /// <summary>
    /// The supervisor's periodic HealthCheck: an instance that fails it (answers unhealthy, or the call
    /// fails) is out of rotation and its assignments move to others, until a HealthCheck passes again.
    /// Heartbeats alone do not bring it back: a collector whose work is stuck may still send them.
    /// </summary>
    public void OnCollectorHealthChecked(string collectorId, bool healthy, string detail)
    {
        List<Attempt>? sends = null;
        var heartbeatsLost = false;
        lock (_gate)
        {
            if (_instances.TryGetValue(collectorId, out var instance) && instance.HealthCheckFailing == healthy)
            {
                instance.HealthCheckFailing = !healthy;
                heartbeatsLost = instance.HeartbeatsLost;
                if (!healthy)
                {
                    RequeueLocked(instance, $"instance '{collectorId}' failed its health check: {detail}");
                }

                sends = PumpLocked();
            }
        }

        if (sends is null)
        {
            return;
        }

        if (healthy)
        {
            LogRecovered(_logger, collectorId, heartbeatsLost ? "passes its health check again but sends no heartbeats: unhealthy" : "passes its health check again: healthy");
        }
        else
        {
            LogHealthCheckFailed(_logger, collectorId, detail);
        }

        Start(sends);
    }

    /// <summary>An instance silent for three heartbeat intervals is unhealthy: its assignments move to others.</summary>
    internal void CheckHeartbeats()
    {
        List<Attempt> sends;
        var lost = new List<string>();
        lock (_gate)
        {
            foreach (var instance in _instances.Values)
            {
                if (instance.HeartbeatsLost || _time.GetElapsedTime(instance.LastSeen) < _heartbeatInterval * 3)
                {
                    continue;
                }

                instance.HeartbeatsLost = true;
                lost.Add(instance.Id);
                RequeueLocked(instance, $"instance '{instance.Id}' lost its heartbeats");
            }

            sends = PumpLocked();
        }

        foreach (var id in lost)
        {
            LogUnhealthy(_logger, id, (_heartbeatInterval * 3).TotalSeconds);
        }

        Start(sends);
    }

    /// <summary>Puts the assignments <paramref name="instance"/> is working on back in the queue. Call under the lock.</summary>
    private void RequeueLocked(Instance instance, string reason)
    {
        foreach (var attempt in instance.Attempts)
        {
            var assignment = attempt.Assignment;
            if (ReferenceEquals(assignment.Current, attempt) && !assignment.Resolved && !assignment.Run.Done)
            {
                // Its call stays pending (and counts against the instance's capacity) until it
                // answers or times out; an answer that still comes is a counted duplicate.
                assignment.Current = null;
                assignment.LastFailure = reason;
                _queue.Add(assignment);
            }
        }
    }

    // ----- dispatch -----

    /// <summary>Hands every queued assignment that has a free instance to one. Call under the lock.</summary>
    private List<Attempt> PumpLocked()
    {
        var started = new List<Attempt>();
        if (_queue.Count == 0)
        {
            return started;
        }

        List<Assignment>? taken = null;
        foreach (var assignment in _queue)
        {
            var instance = Pick(assignment);
            if (instance is null)
            {
                continue;
            }

            (taken ??= []).Add(assignment);
            instance.InFlight++;
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
            started.Add(attempt);
        }

        foreach (var assignment in taken ?? [])
        {
            _queue.Remove(assignment);
        }

        return started;
    }

    /// <summary>Round-robin over the assignment's type: the next healthy instance after the last one chosen that has room.</summary>
    private Instance? Pick(Assignment assignment)
    {
        var taskType = assignment.Run.Spec.TaskType;
        var key = assignment.CollectorType ?? "*" + taskType;
        var candidates = _instances.Values
            .Where(i => i.TaskTypes.Contains(taskType) && (assignment.CollectorType is null || string.Equals(i.Type, assignment.CollectorType, StringComparison.Ordinal)))
            .OrderBy(i => i.Id, StringComparer.Ordinal)
            .ToList();
        if (candidates.Count == 0)
        {
            return null;
        }

        var cursor = _cursors.TryGetValue(key, out var c) ? c : -1;
        for (var k = 1; k <= candidates.Count; k++)
        {
            var index = (int)((uint)(cursor + k) % (uint)candidates.Count);
            var candidate = candidates[index];
            if (candidate.Healthy && candidate.InFlight < candidate.Capacity)
            {
                _cursors[key] = index;
                return candidate;
            }
        }

        return null;
    }

    private void Start(List<Attempt> attempts)
    {
        foreach (var attempt in attempts)
        {
            _ = ExecuteAsync(attempt);
        }
    }

    private async Task ExecuteAsync(Attempt attempt)
    {
        var run = attempt.Assignment.Run;
        RpcResponse response;
        try
        {
            var remaining = run.Deadline - _time.GetUtcNow();
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

                LogSent(_logger, run.Id, attempt.Instance.Id, attempt.Assignment.Attempts);
                response = await _rpc.CallAsync(attempt.Instance.Id, RpcOperation.ExecuteTask, request.ToByteString(), remaining, run.Correlation).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            response = new RpcResponse { Status = RpcStatus.Error, Error = new RpcError { Kind = RpcErrorKind.ExecutionError, Message = $"sending the task failed: {ex.Message}" } };
        }

        OnAttemptCompleted(attempt, response);
    }

    private void OnAttemptCompleted(Attempt attempt, RpcResponse response)
    {
        var assignment = attempt.Assignment;
        var run = assignment.Run;
        var instance = attempt.Instance;
        TaskResult? result = null;
        var error = response.Status == RpcStatus.Ok ? null : response.Error ?? new RpcError { Kind = RpcErrorKind.Unspecified, Message = "the collector answered with an error and no detail" };
        if (error is null)
        {
            try
            {
                result = TaskResult.Parser.ParseFrom(response.Payload);
                if (result.TaskId.Length > 0 && !string.Equals(result.TaskId, run.Id, StringComparison.Ordinal))
                {
                    error = new RpcError { Kind = RpcErrorKind.ExecutionError, Message = $"collector '{instance.Id}' answered task {run.Id} with a result for task {result.TaskId}" };
                    result = null;
                }
            }
            catch (InvalidProtocolBufferException ex)
            {
                error = new RpcError { Kind = RpcErrorKind.ExecutionError, Message = $"collector '{instance.Id}' answered with a payload that is not a TaskResult: {ex.Message}" };
            }
        }

        List<Attempt> sends;
        AggregatedTaskResult? completed = null;
        var late = false;
        lock (_gate)
        {
            instance.InFlight--;
            instance.Attempts.Remove(attempt);
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
                if (assignment.Resolved)
                {
                    run.Aggregator.CountDuplicate();
                }
                else
                {
                    assignment.Resolved = true;
                    assignment.Current = null;
                    _queue.Remove(assignment);
                    run.Aggregator.Offer(result, instance.Id);
                }
            }
            else if (!assignment.Resolved && ReferenceEquals(assignment.Current, attempt))
            {
                switch (error!.Kind)
                {
                    case RpcErrorKind.CommunicationError or RpcErrorKind.NotFound:
                        // The instance went away with the task: another instance of the type takes it.
                        assignment.Current = null;
                        assignment.LastFailure = $"instance '{instance.Id}': {error.Message}";
                        _queue.Add(assignment);
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
            }

            if (!run.Done && run.Assignments.TrueForAll(a => a.Resolved))
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
                run.Done = true;
                _live.Remove(run.Id);
                _failed++;
                failure = new TaskFailedException(RpcErrorKind.Timeout, NoInstanceMessage(run));
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

    private string NoInstanceMessage(TaskRun run)
    {
        var type = run.Spec.TaskType;
        var offering = _instances.Values.Where(i => i.TaskTypes.Contains(type)).OrderBy(i => i.Id, StringComparer.Ordinal).ToList();
        var seconds = run.Timeout.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture);
        if (offering.Count == 0)
        {
            var connected = _instances.Count == 0 ? "no collectors are connected" : "connected collectors: " + string.Join(", ", _instances.Values.OrderBy(i => i.Id, StringComparer.Ordinal).Select(i => $"{i.Id} (tasks: {(i.TaskTypes.Count == 0 ? "none" : string.Join(' ', i.TaskTypes.Order(StringComparer.Ordinal)))})"));
            return $"no collector instance executing task type '{type}' became available within {seconds} s; {connected}";
        }

        return $"no instance executing task type '{type}' had a free slot within {seconds} s: " +
            string.Join(", ", offering.Select(i => $"{i.Id} ({(i.Healthy ? "healthy" : "unhealthy")}, {i.InFlight}/{i.Capacity} in flight)"));
    }

    private AggregatedTaskResult CompleteLocked(TaskRun run, bool timedOut)
    {
        run.Done = true;
        _live.Remove(run.Id);
        var (results, duplicates) = run.Aggregator.Build();
        var aggregated = new AggregatedTaskResult
        {
            TaskId = run.Id,
            TaskType = run.Spec.TaskType,
            CorrelationId = run.Correlation.CorrelationId,
            RootCorrelationId = run.Correlation.RootCorrelationId,
            DuplicatesRemoved = (uint)duplicates,
            Redistributions = (uint)run.Redistributions,
            DurationUs = (ulong)_time.GetElapsedTime(run.Started).TotalMicroseconds,
        };
        aggregated.Results.AddRange(results);
        aggregated.ExpectedCollectorTypes.AddRange(run.Assignments.Select(a => a.CollectorType ?? "(any)").Order(StringComparer.Ordinal));
        foreach (var assignment in run.Assignments.OrderBy(a => a.CollectorType, StringComparer.Ordinal))
        {
            if (assignment.Resolved && assignment.Failure is null)
            {
                continue;
            }

            var seconds = run.Timeout.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture);
            aggregated.Missing.Add(new MissingCollector
            {
                CollectorType = assignment.CollectorType ?? string.Empty,
                InstanceId = assignment.LastInstance ?? string.Empty,
                Reason = assignment.Failure
                    ?? (assignment.Current is not null
                        ? $"instance '{assignment.LastInstance}' did not answer within {seconds} s"
                        : $"no instance of type '{assignment.CollectorType}' was free within {seconds} s{(assignment.LastFailure is null ? string.Empty : "; last failure: " + assignment.LastFailure)}"),
            });
        }

        aggregated.Partial = aggregated.Missing.Count > 0;
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
        _healthTimer.Dispose();
        List<TaskRun> live;
        lock (_gate)
        {
            live = [.. _live.Values];
            _live.Clear();
            _queue.Clear();
        }

        foreach (var run in live)
        {
            run.Timer?.Dispose();
            run.Completion.TrySetException(new TaskFailedException(RpcErrorKind.ExecutionError, "the agent is shutting down"));
        }
    }

    private sealed class Instance(string id, string type, HashSet<string> taskTypes, int capacity, long connectionId, long lastSeen)
    {
        public string Id { get; } = id;

        public string Type { get; } = type;

        public HashSet<string> TaskTypes { get; } = taskTypes;

        public int Capacity { get; } = capacity;

        public long ConnectionId { get; } = connectionId;

        public long LastSeen { get; set; } = lastSeen;

        /// <summary>No heartbeat for three intervals.</summary>
        public bool HeartbeatsLost { get; set; }

        /// <summary>The last periodic HealthCheck answered unhealthy or failed.</summary>
        public bool HealthCheckFailing { get; set; }

        public bool Healthy => !HeartbeatsLost && !HealthCheckFailing;

        public int InFlight { get; set; }

        public HashSet<Attempt> Attempts { get; } = [];
    }

    private sealed class TaskRun(string id, TaskSpec spec, CorrelationMetadata correlation, DateTimeOffset deadline, TimeSpan timeout, long started)
    {
        public string Id { get; } = id;

        public TaskSpec Spec { get; } = spec;

        public CorrelationMetadata Correlation { get; } = correlation;

        public DateTimeOffset Deadline { get; } = deadline;

        public TimeSpan Timeout { get; } = timeout;

        public long Started { get; } = started;

        public List<Assignment> Assignments { get; } = [];

        public ResultAggregator Aggregator { get; } = new(id);

        public TaskCompletionSource<AggregatedTaskResult> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public ITimer? Timer { get; set; }

        public bool Done { get; set; }

        public bool EverSent { get; set; }

        public int Redistributions { get; set; }
    }

    private sealed class Assignment(TaskRun run, string? collectorType, long arrival)
    {
        public TaskRun Run { get; } = run;

        public long Arrival { get; } = arrival;

        /// <summary>Null until an instance takes it when no type offered the task at submission.</summary>
        public string? CollectorType { get; set; } = collectorType;

        public Attempt? Current { get; set; }

        public string? LastInstance { get; set; }

        public string? LastFailure { get; set; }

        public string? Failure { get; set; }

        public bool Resolved { get; set; }

        public int Attempts { get; set; }
    }

    private sealed record Attempt(Assignment Assignment, Instance Instance);

    /// <summary>Higher priority first, then first come first served.</summary>
    private sealed class AssignmentOrder : IComparer<Assignment>
    {
        public static readonly AssignmentOrder Instance = new();

        public int Compare(Assignment? x, Assignment? y)
        {
            if (ReferenceEquals(x, y))
            {
                return 0;
            }

            var byPriority = y!.Run.Spec.Priority.CompareTo(x!.Run.Spec.Priority);
            return byPriority != 0 ? byPriority : x.Arrival.CompareTo(y.Arrival);
        }
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
