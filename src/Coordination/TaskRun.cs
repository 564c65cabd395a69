using System.Globalization;
using DaemonEye.Protocol.Task.V1;
using DaemonEye.Protocol.V1;

namespace DaemonEye.Coordination;

/// <summary>
/// One task from submission to its aggregated result: its assignments (one per collector type), the
/// aggregation of their answers, its deadline timer and the completion its caller awaits. Not
/// thread-safe: the coordinator holds its lock around every change.
/// </summary>
internal sealed class TaskRun(string id, TaskSpec spec, CorrelationMetadata correlation, DateTimeOffset deadline, TimeSpan timeout, long started)
{
    private readonly ResultAggregator _aggregator = new(id);

    public string Id { get; } = id;

    public TaskSpec Spec { get; } = spec;

    public CorrelationMetadata Correlation { get; } = correlation;

    public DateTimeOffset Deadline { get; } = deadline;

    public TimeSpan Timeout { get; } = timeout;

    public long Started { get; } = started;

    public List<Assignment> Assignments { get; } = [];

    public TaskCompletionSource<AggregatedTaskResult> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public ITimer? Timer { get; set; }

    public bool Done { get; private set; }

    public bool EverSent { get; set; }

    public int Redistributions { get; set; }

    public bool AllResolved => Assignments.TrueForAll(a => a.Resolved);

    /// <summary>The first answer of <paramref name="assignment"/>: taken into the aggregation; a second one is a counted duplicate.</summary>
    public void Answered(Assignment assignment, TaskResult result, string instanceId)
    {
        if (assignment.Resolved)
        {
            _aggregator.CountDuplicate();
            return;
        }

        assignment.Resolved = true;
        assignment.Current = null;
        _aggregator.Offer(result, instanceId);
    }

    /// <summary>Marks the run done without a result (it failed; the caller fails the completion).</summary>
    public void Abandon() => Done = true;

    /// <summary>Marks the run done and builds its aggregated result; missing types are named with the reason.</summary>
    public AggregatedTaskResult Complete(TimeSpan duration)
    {
        Done = true;
        var (results, duplicates) = _aggregator.Build();
        var aggregated = new AggregatedTaskResult
        {
            TaskId = Id,
            TaskType = Spec.TaskType,
            CorrelationId = Correlation.CorrelationId,
            RootCorrelationId = Correlation.RootCorrelationId,
            DuplicatesRemoved = (uint)duplicates,
            Redistributions = (uint)Redistributions,
            DurationUs = (ulong)duration.TotalMicroseconds,
        };
        aggregated.Results.AddRange(results);
        aggregated.ExpectedCollectorTypes.AddRange(Assignments.Select(a => a.CollectorType ?? "(any)").Order(StringComparer.Ordinal));
        var seconds = Timeout.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture);
        foreach (var assignment in Assignments.OrderBy(a => a.CollectorType, StringComparer.Ordinal))
        {
            if (assignment.Resolved && assignment.Failure is null)
            {
                continue;
            }

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
        return aggregated;
    }
}

/// <summary>The part of a task one collector type executes.</summary>
internal sealed class Assignment(TaskRun run, string? collectorType, long arrival)
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

/// <summary>One sending of an assignment to one instance (one connection of a collector).</summary>
internal sealed record Attempt(Assignment Assignment, InstanceLoad Instance);
