using System.Globalization;
using DaemonEye.Protocol.Task.V1;
using DaemonEye.Protocol.V1;
using Google.Protobuf;

namespace DaemonEye.Coordination;

/// <summary>Dispatch: choosing instances, sending assignments, answers, redistribution and deadlines.</summary>
internal sealed partial class TaskCoordinator
{
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
}
