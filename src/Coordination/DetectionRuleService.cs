using DaemonEye.Gateway;
using DaemonEye.Gateway.Rpc;
using DaemonEye.Logging;
using DaemonEye.Protocol.Alert.V1;
using DaemonEye.Protocol.Process.V1;
using DaemonEye.Protocol.Task.V1;
using DaemonEye.Protocol.V1;
using DaemonEye.Topics;
using Google.Protobuf;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DaemonEye.Coordination;

/// <summary>What one run of the rules did.</summary>
public sealed record RuleRunReport(
    AggregatedTaskResult Snapshot,
    int Processes,
    IReadOnlyList<(DetectionRule Rule, RuleEvaluation Evaluation)> Outcomes,
    IReadOnlyList<RuleProblem> Problems,
    int AlertsPublished);

/// <summary>
/// Runs the detection rules: loads config/rules/*.yaml (coordination.rules.directory) afresh for each
/// run, asks the collectors for a process snapshot through the task coordinator (task type
/// process.snapshot, aggregated over every collector type that offers it), loads it into SQLite in
/// memory, runs every rule under its time limit, and publishes one Alert per matching row on
/// <c>events.alert.&lt;severity&gt;</c>, as a child of the snapshot task's correlation. Runs every
/// coordination.rules.interval_seconds and on demand (IPC rules_run).
/// </summary>
internal sealed partial class DetectionRuleService(
    IOptions<CoordinationOptions> options,
    TaskCoordinator coordinator,
    IBusPublisher publisher,
    TimeProvider time,
    ILogger<DetectionRuleService> logger) : IHostedService, IDisposable
{
    public const string AlertTopicPrefix = WellKnownTopics.AlertPrefix;
    public const string AlertContentType = "application/x-protobuf; messageType=daemoneye.alert.v1.Alert";
    public const string SnapshotPayloadType = "daemoneye.process.v1.ProcessSnapshot";

    private readonly RulesOptions _options = options.Value.Rules;
    private readonly SemaphoreSlim _oneRunAtATime = new(1, 1);
    private readonly CancellationTokenSource _stopping = new();
    private ITimer? _timer;
    private string _lastProblems = string.Empty;

    public string Directory => _options.Directory;

    public double IntervalSeconds => _options.IntervalSeconds;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        var (rules, _) = Load();
        var directory = Path.GetFullPath(_options.Directory);
        LogLoaded(logger, rules.Count, directory, _options.IntervalSeconds);
        if (_options.IntervalSeconds > 0)
        {
            _timer = time.CreateTimer(_ => _ = RunScheduledAsync(), null, _options.Interval, _options.Interval);
        }

        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_timer is not null)
        {
            await _timer.DisposeAsync();
        }

        await _stopping.CancelAsync();
    }

    /// <summary>The rules as the directory holds them now; problems are logged when they change.</summary>
    public (List<DetectionRule> Rules, List<RuleProblem> Problems) Load()
    {
        var (rules, problems) = RuleLoader.LoadDirectory(_options.Directory);
        var summary = string.Join('\n', problems);
        if (!string.Equals(summary, _lastProblems, StringComparison.Ordinal))
        {
            _lastProblems = summary;
            foreach (var problem in problems)
            {
                LogProblem(logger, problem.ToString());
            }
        }

        return (rules, problems);
    }

    private async Task RunScheduledAsync()
    {
        try
        {
            var report = await RunAsync(null, _stopping.Token);
            LogRun(logger, report.Outcomes.Count, report.Processes, report.AlertsPublished, report.Snapshot.TaskId);
        }
        catch (TaskFailedException ex)
        {
            LogSnapshotFailed(logger, ex.Message);
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
        }
        catch (Exception ex)
        {
            LogRunFailed(logger, ex);
        }
    }

    /// <summary>One run of every rule over a fresh snapshot, alerts published.</summary>
    /// <exception cref="TaskFailedException">No snapshot could be taken.</exception>
    public async Task<RuleRunReport> RunAsync(CorrelationMetadata? parent, CancellationToken cancellationToken)
    {
        await _oneRunAtATime.WaitAsync(cancellationToken);
        try
        {
            var (rules, problems) = Load();
            var snapshot = await TakeSnapshotAsync(parent, cancellationToken);
            using var database = SnapshotDatabase.Create(Snapshots(snapshot));
            var outcomes = new List<(DetectionRule, RuleEvaluation)>();
            var published = 0;
            var chain = new CorrelationMetadata
            {
                CorrelationId = snapshot.CorrelationId,
                RootCorrelationId = snapshot.RootCorrelationId,
                WorkflowStage = "alert",
            };
            if (parent is not null)
            {
                chain.Tags.Add(parent.Tags); // the run's tags (as its snapshot task and the collectors' events have them)
            }

            var collectors = snapshot.Results.Select(r => r.CollectorId).ToList();
            foreach (var rule in rules)
            {
                var evaluation = database.Evaluate(rule.Sql, _options.TimeLimit, time, _options.MaxAlertsPerRule);
                outcomes.Add((rule, evaluation));
                if (evaluation.Error is not null)
                {
                    LogRuleFailed(logger, rule.Id, rule.File, rule.Line, evaluation.Error);
                    continue;
                }

                foreach (var row in evaluation.Rows)
                {
                    var alert = ToAlert(rule, evaluation.Columns, row, snapshot, collectors);
                    var correlation = Correlation.ChildOf(chain);
                    correlation.Tags["rule_id"] = rule.Id;
                    await publisher.PublishAsync(AlertTopicPrefix + rule.Severity, alert.ToByteString(), AlertContentType, correlation, cancellationToken);
                    published++;
                }

                if (evaluation.TotalRows > evaluation.Rows.Count)
                {
                    LogAlertsCapped(logger, rule.Id, evaluation.TotalRows - evaluation.Rows.Count, _options.MaxAlertsPerRule);
                }
            }

            return new RuleRunReport(snapshot, database.Processes, outcomes, problems, published);
        }
        finally
        {
            _oneRunAtATime.Release();
        }
    }

    /// <summary>One rule (the text of a rule file) over a fresh snapshot; nothing is published.</summary>
    public async Task<(DetectionRule? Rule, IReadOnlyList<RuleProblem> Problems, RuleEvaluation? Evaluation, AggregatedTaskResult? Snapshot, int Processes)> TestAsync(
        string file, string content, CorrelationMetadata? parent, CancellationToken cancellationToken)
    {
        var (rules, problems) = RuleLoader.Parse(file, content);
        if (problems.Count > 0)
        {
            return (null, problems, null, null, 0);
        }

        if (rules.Count != 1)
        {
            return (null, [new RuleProblem(file, 1, null, $"holds {rules.Count} rules; rules test runs exactly one")], null, null, 0);
        }

        var snapshot = await TakeSnapshotAsync(parent, cancellationToken);
        using var database = SnapshotDatabase.Create(Snapshots(snapshot));
        var evaluation = database.Evaluate(rules[0].Sql, _options.TimeLimit, time, 10_000);
        return (rules[0], evaluation.Error is null ? [] : [new RuleProblem(file, rules[0].Line, rules[0].Id, evaluation.Error)], evaluation, snapshot, database.Processes);
    }

    /// <summary>Parameters of the snapshot task: scan now (not the last periodic scan), and do not also publish it on the bus.</summary>
    private static readonly Dictionary<string, string> SnapshotParameters = new(StringComparer.Ordinal) { ["fresh"] = "true", ["publish"] = "false" };

    /// <summary>A snapshot from at least one collector; rules never run over empty tables that only mean "nobody answered".</summary>
    private async Task<AggregatedTaskResult> TakeSnapshotAsync(CorrelationMetadata? parent, CancellationToken cancellationToken)
    {
        var snapshot = await coordinator.RunAsync(new TaskSpec(RulesOptions.SnapshotTaskType, SnapshotParameters, Priority: 0, _options.SnapshotTimeout), parent, cancellationToken);
        if (snapshot.Results.Count == 0)
        {
            throw new TaskFailedException(RpcErrorKind.Timeout,
                $"no collector returned a process snapshot (task {snapshot.TaskId}): {string.Join("; ", snapshot.Missing.Select(m => $"{m.CollectorType}: {m.Reason}"))}");
        }

        return snapshot;
    }

    private IEnumerable<ProcessSnapshot> Snapshots(AggregatedTaskResult snapshot)
    {
        foreach (var result in snapshot.Results)
        {
            if (!string.Equals(result.PayloadType, SnapshotPayloadType, StringComparison.Ordinal))
            {
                LogUnexpectedPayload(logger, result.CollectorId, result.PayloadType);
                continue;
            }

            ProcessSnapshot parsed;
            try
            {
                parsed = ProcessSnapshot.Parser.ParseFrom(result.Payload);
            }
            catch (InvalidProtocolBufferException ex)
            {
                LogUnexpectedPayload(logger, result.CollectorId, $"{result.PayloadType} that does not parse: {ex.Message}");
                continue;
            }

            if (parsed.CollectorId.Length == 0)
            {
                parsed.CollectorId = result.CollectorId;
            }

            yield return parsed;
        }
    }

    private Alert ToAlert(DetectionRule rule, IReadOnlyList<string> columns, string?[] row, AggregatedTaskResult snapshot, List<string> collectors)
    {
        var alert = new Alert
        {
            AlertId = Correlation.NewId(),
            RuleId = rule.Id,
            RuleName = rule.Name,
            Severity = rule.Severity,
            Description = rule.Description,
            TaskId = snapshot.TaskId,
            TaskCorrelationId = snapshot.CorrelationId,
            RootCorrelationId = snapshot.RootCorrelationId,
            RaisedUnixMs = (ulong)time.GetUtcNow().ToUnixTimeMilliseconds(),
            RuleFile = rule.File,
            PartialSnapshot = snapshot.Partial,
        };
        alert.Collectors.AddRange(collectors);
        for (var i = 0; i < columns.Count; i++)
        {
            alert.Fields.Add(new AlertField { Name = columns[i], Value = row[i] ?? string.Empty, IsNull = row[i] is null });
        }

        return alert;
    }

    public void Dispose()
    {
        _timer?.Dispose();
        _stopping.Dispose();
        _oneRunAtATime.Dispose();
    }

    [LoggerMessage(EventId = 5100, Level = LogLevel.Information, Message = "Detection rules: {Count} loaded from {Directory}; interval {IntervalSeconds} s (0 = on demand only)")]
    private static partial void LogLoaded(ILogger logger, int count, string directory, double intervalSeconds);

    [LoggerMessage(EventId = 5101, Level = LogLevel.Warning, Message = "Detection rule not loaded: {Problem}")]
    private static partial void LogProblem(ILogger logger, string problem);

    [LoggerMessage(EventId = 5102, Level = LogLevel.Warning, Message = "Detection rule {RuleId} ({File}:{Line}) {Error}")]
    private static partial void LogRuleFailed(ILogger logger, string ruleId, string file, int line, string error);

    [LoggerMessage(EventId = 5103, Level = LogLevel.Information, Message = "Detection rules ran: {Rules} rule(s) over {Processes} process(es), {Alerts} alert(s) published (snapshot task {TaskId})")]
    private static partial void LogRun(ILogger logger, int rules, int processes, int alerts, string taskId);

    [LoggerMessage(EventId = 5104, Level = LogLevel.Warning, Message = "Detection rules did not run: no process snapshot: {Reason}")]
    private static partial void LogSnapshotFailed(ILogger logger, string reason);

    [LoggerMessage(EventId = 5105, Level = LogLevel.Error, Message = "Detection rule run failed")]
    private static partial void LogRunFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 5106, Level = LogLevel.Warning, Message = "Detection rule {RuleId}: {Count} more matching row(s) not published (coordination.rules.max_alerts_per_rule is {Max})")]
    private static partial void LogAlertsCapped(ILogger logger, string ruleId, long count, int max);

    [LoggerMessage(EventId = 5107, Level = LogLevel.Warning, Message = "Snapshot result from {CollectorId} skipped: payload type {PayloadType}, expected daemoneye.process.v1.ProcessSnapshot")]
    private static partial void LogUnexpectedPayload(ILogger logger, string collectorId, Untrusted payloadType);
}
