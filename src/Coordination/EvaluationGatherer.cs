using DaemonEye.Gateway.Rpc;
using DaemonEye.Protocol.Filesystem.V1;
using DaemonEye.Protocol.Network.V1;
using DaemonEye.Protocol.Process.V1;
using DaemonEye.Protocol.Task.V1;
using DaemonEye.Protocol.V1;
using Google.Protobuf;

namespace DaemonEye.Coordination;

/// <summary>One task type's part of an evaluation: its aggregated result, or why there is none.</summary>
public sealed record EvaluationTask(string TaskType, AggregatedTaskResult? Result, string? Failure)
{
    /// <summary>No collector result at all: the tables it fills mean nothing.</summary>
    public bool NoData => Result is null || Result.Results.Count == 0;

    public bool Partial => NoData || Result!.Partial;

    /// <summary>Why the type is partial or empty, for a human.</summary>
    public string Reason => Failure
        ?? (Result is null ? "no result"
            : Result.Results.Count == 0 ? $"no collector answered (task {Result.TaskId}): {string.Join("; ", Result.Missing.Select(m => $"{m.CollectorType}: {m.Reason}"))}"
            : string.Join("; ", Result.Missing.Select(m => $"{m.CollectorType}: {m.Reason}")));
}

/// <summary>The collector answers of one evaluation, under one correlation (the tasks' common parent).</summary>
public sealed record Evaluation(CorrelationMetadata Correlation, IReadOnlyDictionary<string, EvaluationTask> Tasks, EvaluationData Data, IReadOnlyList<string> Skipped);

/// <summary>
/// Gathers one evaluation's data: one task per needed task type, all at once and all children of one
/// evaluation correlation (itself a child of the caller's, so a CLI request is the root), each answered
/// by every collector type that offers it; the answers are parsed into one <see cref="EvaluationData"/>
/// so rules may join them. A type whose task fails or times out is recorded with the reason (its rules
/// are flagged partial or not evaluated), never fatal to the other types.
/// </summary>
internal sealed class EvaluationGatherer(TaskCoordinator coordinator, RulesOptions options, TimeProvider time)
{
    public const string ProcessSnapshotPayloadType = "daemoneye.process.v1.ProcessSnapshot";
    public const string NetworkSnapshotPayloadType = "daemoneye.network.v1.NetworkSnapshot";
    public const string FileSnapshotPayloadType = "daemoneye.filesystem.v1.FileSnapshot";

    private static readonly Dictionary<string, IReadOnlyDictionary<string, string>> Parameters = new(StringComparer.Ordinal)
    {
        // Scan now (not the last periodic scan), and do not also publish the snapshot on the bus.
        [SnapshotDatabase.ProcessSnapshotTaskType] = new Dictionary<string, string>(StringComparer.Ordinal) { ["fresh"] = "true", ["publish"] = "false" },
        [SnapshotDatabase.NetworkSnapshotTaskType] = new Dictionary<string, string>(StringComparer.Ordinal) { ["fresh"] = "true" },
    };

    public async Task<Evaluation> GatherAsync(IReadOnlyCollection<string> taskTypes, IReadOnlyDictionary<string, IReadOnlyList<string>> watchLists, CorrelationMetadata? parent, CancellationToken cancellationToken)
    {
        var correlation = Correlation.ChildOf(parent);
        correlation.WorkflowStage = "evaluation";
        var runs = taskTypes.Order(StringComparer.Ordinal).Select(type => RunAsync(type, correlation, cancellationToken)).ToList();
        var tasks = await Task.WhenAll(runs).ConfigureAwait(false);
        var data = new EvaluationData
        {
            WatchLists = watchLists,
            EventsSinceUnixMs = (time.GetUtcNow() - options.EventRetention).ToUnixTimeMilliseconds(),
        };
        var skipped = new List<string>();
        foreach (var task in tasks)
        {
            foreach (var result in task.Result?.Results ?? [])
            {
                if (Parse(result, data) is { } problem)
                {
                    skipped.Add(problem);
                }
            }
        }

        return new Evaluation(correlation, tasks.ToDictionary(t => t.TaskType, StringComparer.Ordinal), data, skipped);
    }

    private async Task<EvaluationTask> RunAsync(string taskType, CorrelationMetadata evaluation, CancellationToken cancellationToken)
    {
        var parameters = Parameters.TryGetValue(taskType, out var p) ? p : new Dictionary<string, string>();
        try
        {
            var result = await coordinator.RunAsync(new TaskSpec(taskType, parameters, Priority: 0, options.SnapshotTimeout), evaluation, cancellationToken).ConfigureAwait(false);
            return new EvaluationTask(taskType, result, null);
        }
        catch (TaskFailedException ex)
        {
            return new EvaluationTask(taskType, null, ex.Message);
        }
    }

    /// <summary>Adds one collector result to the data; why it was skipped, or null.</summary>
    private static string? Parse(TaskResult result, EvaluationData data)
    {
        try
        {
            switch (result.PayloadType)
            {
                case ProcessSnapshotPayloadType:
                    var processes = ProcessSnapshot.Parser.ParseFrom(result.Payload);
                    processes.CollectorId = processes.CollectorId.Length > 0 ? processes.CollectorId : result.CollectorId;
                    data.Processes.Add(processes);
                    return null;
                case NetworkSnapshotPayloadType:
                    var network = NetworkSnapshot.Parser.ParseFrom(result.Payload);
                    network.CollectorId = network.CollectorId.Length > 0 ? network.CollectorId : result.CollectorId;
                    data.Networks.Add(network);
                    return null;
                case FileSnapshotPayloadType:
                    var files = FileSnapshot.Parser.ParseFrom(result.Payload);
                    files.CollectorId = files.CollectorId.Length > 0 ? files.CollectorId : result.CollectorId;
                    data.Files.Add(files);
                    return null;
                default:
                    return $"result from {result.CollectorId} skipped: payload type '{result.PayloadType}' fills no rule table";
            }
        }
        catch (InvalidProtocolBufferException ex)
        {
            return $"result from {result.CollectorId} skipped: {result.PayloadType} that does not parse: {ex.Message}";
        }
    }
}
