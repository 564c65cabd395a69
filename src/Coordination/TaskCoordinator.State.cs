using DaemonEye.Protocol.Task.V1;
using DaemonEye.Protocol.V1;

namespace DaemonEye.Coordination;

/// <summary>The coordinator's bookkeeping types: instances, task runs, assignments and their queue order.</summary>
internal sealed partial class TaskCoordinator
{
    private sealed class Instance(string id, string type, HashSet<string> taskTypes, int capacity, long connectionId)
    {
        public string Id { get; } = id;

        public string Type { get; } = type;

        public HashSet<string> TaskTypes { get; } = taskTypes;

        public int Capacity { get; } = capacity;

        public long ConnectionId { get; } = connectionId;

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
}
