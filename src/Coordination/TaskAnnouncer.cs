using System.Threading.Channels;
using DaemonEye.Gateway;
using DaemonEye.Protocol.Task.V1;
using DaemonEye.Protocol.V1;
using DaemonEye.Topics;
using Google.Protobuf;
using Microsoft.Extensions.Logging;

namespace DaemonEye.Coordination;

/// <summary>
/// Publishes every task's announcement, assignments and outcome on <c>control.collector.task</c>
/// (<see cref="TaskEvent"/>), in the order they happen, from one sender loop: the coordinator only
/// enqueues (never waits on the bus, may call under its lock). Bounded: when the bus falls behind by
/// <see cref="Capacity"/> events, further ones are dropped and counted.
/// </summary>
internal sealed partial class TaskAnnouncer : IAsyncDisposable
{
    public const string Topic = WellKnownTopics.CollectorTask;
    public const string ContentType = "application/x-protobuf; messageType=daemoneye.task.v1.TaskEvent";
    public const int Capacity = 10_000;

    private readonly Channel<(TaskEvent Event, CorrelationMetadata Correlation)> _events =
        Channel.CreateBounded<(TaskEvent, CorrelationMetadata)>(new BoundedChannelOptions(Capacity) { SingleReader = true, FullMode = BoundedChannelFullMode.DropWrite });
    private readonly IBusPublisher _publisher;
    private readonly ILogger _logger;
    private readonly Task _sender;
    private long _dropped;

    public TaskAnnouncer(IBusPublisher publisher, ILogger logger)
    {
        _publisher = publisher;
        _logger = logger;
        _sender = Task.Run(SendAsync);
    }

    public long Dropped => Interlocked.Read(ref _dropped);

    public void Announced(TaskRun run)
    {
        var e = New(TaskEventKind.Announced, run);
        e.CollectorTypes.AddRange(run.Assignments.Select(a => a.CollectorType).OfType<string>());
        Enqueue(e, run);
    }

    public void Assigned(Attempt attempt)
    {
        var run = attempt.Assignment.Run;
        var e = New(TaskEventKind.Assigned, run);
        e.InstanceId = attempt.Instance.Id;
        e.CollectorType = attempt.Instance.Type;
        e.Attempt = (uint)attempt.Assignment.Attempts;
        Enqueue(e, run);
    }

    /// <summary>An instance's result arrived for its assignment (before the task completes).</summary>
    public void Answered(Attempt attempt, TaskResult result, TimeSpan elapsed)
    {
        var e = OfAttempt(TaskEventKind.Answered, attempt, elapsed);
        e.Result = new CollectorResultSummary
        {
            CollectorId = result.CollectorId,
            Sequence = result.Sequence,
            PayloadType = result.PayloadType,
            PayloadBytes = (ulong)result.Payload.Length,
        };
        Enqueue(e, attempt.Assignment.Run);
    }

    /// <summary>An instance's attempt failed: <paramref name="reason"/> says how, and whether another instance takes it.</summary>
    public void AttemptFailed(Attempt attempt, string reason, TimeSpan elapsed)
    {
        var e = OfAttempt(TaskEventKind.AttemptFailed, attempt, elapsed);
        e.Failure = reason;
        Enqueue(e, attempt.Assignment.Run);
    }

    private static TaskEvent OfAttempt(TaskEventKind kind, Attempt attempt, TimeSpan elapsed)
    {
        var e = New(kind, attempt.Assignment.Run);
        e.InstanceId = attempt.Instance.Id;
        e.CollectorType = attempt.Instance.Type;
        e.Attempt = (uint)attempt.Assignment.Attempts;
        e.ElapsedUs = (ulong)Math.Max(0, elapsed.Ticks / TimeSpan.TicksPerMicrosecond);
        return e;
    }

    public void Completed(TaskRun run, AggregatedTaskResult result)
    {
        var e = New(TaskEventKind.Completed, run);
        e.CollectorTypes.AddRange(result.ExpectedCollectorTypes);
        var summary = new TaskResultSummary
        {
            Partial = result.Partial,
            DuplicatesRemoved = result.DuplicatesRemoved,
            Redistributions = result.Redistributions,
            DurationUs = result.DurationUs,
        };
        summary.Missing.AddRange(result.Missing);
        summary.Results.AddRange(result.Results.Select(r => new CollectorResultSummary
        {
            CollectorId = r.CollectorId,
            Sequence = r.Sequence,
            PayloadType = r.PayloadType,
            PayloadBytes = (ulong)r.Payload.Length,
        }));
        e.Summary = summary;
        Enqueue(e, run);
    }

    public void Failed(TaskRun run, string reason)
    {
        var e = New(TaskEventKind.Failed, run);
        e.Failure = reason;
        Enqueue(e, run);
    }

    private static TaskEvent New(TaskEventKind kind, TaskRun run) => new()
    {
        Kind = kind,
        TaskId = run.Id,
        TaskType = run.Spec.TaskType,
        Priority = run.Spec.Priority,
        CorrelationId = run.Correlation.CorrelationId,
        ParentCorrelationId = run.Correlation.ParentCorrelationId,
        RootCorrelationId = run.Correlation.RootCorrelationId,
        TimeoutMs = (ulong)run.Timeout.TotalMilliseconds,
    };

    private void Enqueue(TaskEvent e, TaskRun run)
    {
        // Each event its own id, a child of the task's: the chain leads from it to the task and its cause.
        var correlation = Gateway.Rpc.Correlation.ChildOf(run.Correlation);
        correlation.WorkflowStage = "task." + e.Kind.ToString().ToLowerInvariant();
        if (!_events.Writer.TryWrite((e, correlation)))
        {
            Interlocked.Increment(ref _dropped);
        }
    }

    private async Task SendAsync()
    {
        await foreach (var (e, correlation) in _events.Reader.ReadAllAsync().ConfigureAwait(false))
        {
            try
            {
                await _publisher.PublishAsync(Topic, e.ToByteString(), ContentType, correlation).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                LogPublishFailed(_logger, e.TaskId, e.Kind, ex.Message);
            }
        }
    }

    /// <summary>Stops taking events; those queued are still sent.</summary>
    public void Complete() => _events.Writer.TryComplete();

    public async ValueTask DisposeAsync()
    {
        Complete();
        await _sender.ConfigureAwait(false);
    }

    [LoggerMessage(EventId = 5008, Level = LogLevel.Debug, Message = "Task {TaskId}: publishing its {Kind} event on control.collector.task failed: {Reason}")]
    private static partial void LogPublishFailed(ILogger logger, string taskId, TaskEventKind kind, string reason);
}
