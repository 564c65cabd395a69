using DaemonEye.Gateway;
using DaemonEye.Logging;
using DaemonEye.Protocol.Task.V1;
using DaemonEye.Topics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace DaemonEye.Coordination;

/// <summary>What one rule did in one run: its evaluation, or why it was not evaluated.</summary>
public sealed record RuleOutcomeReport(DetectionRule Rule, RuleEvaluation Evaluation)
{
    public RuleNeeds Needs { get; init; } = new([], []);

    /// <summary>Task types no running collector offers; non-empty: the rule was not evaluated.</summary>
    public IReadOnlyList<string> WaitingFor { get; init; } = [];

    /// <summary>Some needed task answered partially; the rule's alerts are flagged partial.</summary>
    public bool Partial { get; init; }

    public int Published { get; init; }

    public int Suppressed { get; init; }
}

/// <summary>What one run of the rules did.</summary>
public sealed record RuleRunReport(
    Evaluation? Evaluation,
    int Processes,
    IReadOnlyList<RuleOutcomeReport> Outcomes,
    IReadOnlyList<RuleProblem> Problems,
    int AlertsPublished)
{
    /// <summary>The process.snapshot task of the run (or its first task), null when none ran.</summary>
    public AggregatedTaskResult? Snapshot =>
        Evaluation?.Tasks.GetValueOrDefault(SnapshotDatabase.ProcessSnapshotTaskType)?.Result ?? Evaluation?.Tasks.Values.Select(t => t.Result).FirstOrDefault(r => r is not null);

    public IReadOnlyDictionary<string, int> TableRows { get; init; } = new Dictionary<string, int>();

    /// <summary>What the run changed in the resident tables (rows inserted, updated, deleted per table; or a full load).</summary>
    public TableChanges TableChanges { get; init; } = TableChanges.None;

    public int PartialAlerts { get; init; }

    public int SuppressedAlerts { get; init; }
}

/// <summary>What testing one rule gave.</summary>
public sealed record RuleTestReport(DetectionRule? Rule, IReadOnlyList<RuleProblem> Problems, RuleEvaluation? Evaluation, Evaluation? Data, int Processes, RuleState? State)
{
    public IReadOnlyDictionary<string, int> TableRows { get; init; } = new Dictionary<string, int>();
}

/// <summary>
/// Runs the detection rules: loads config/rules/*.yaml (coordination.rules.directory) afresh for each
/// run; finds what each rule reads (<see cref="RuleRequirements"/>) and whether a running collector
/// offers it (<see cref="RuleReadiness"/>: rules that cannot run are waiting, reported and logged);
/// gathers one evaluation (<see cref="EvaluationGatherer"/>: one task per needed type under one
/// correlation), loads it into one SQLite database, runs every ready rule under its time limit, and
/// publishes one Alert per matching row on <c>events.alert.&lt;severity&gt;</c> carrying the chain
/// evaluation → tasks → collector results → alert (<see cref="AlertFactory"/>), de-duplicated per rule
/// and key (<see cref="AlertSuppressor"/>). Runs every coordination.rules.interval_seconds and on
/// demand (IPC rules_run). Event rules (<c>kind: event</c>) are loaded and listed with the others but
/// run by <see cref="EventRuleService"/> as events arrive, never here.
/// </summary>
internal sealed partial class DetectionRuleService : IHostedService, IDisposable
{
    public const string AlertTopicPrefix = WellKnownTopics.AlertPrefix;
    public const string AlertContentType = "application/x-protobuf; messageType=daemoneye.alert.v1.Alert";
    public const string SnapshotPayloadType = EvaluationGatherer.ProcessSnapshotPayloadType;

    private readonly CoordinationOptions _coordination;
    private readonly RulesOptions _options;
    private readonly TaskCoordinator _coordinator;
    private readonly IBusPublisher _publisher;
    private readonly TimeProvider _time;
    private readonly ILogger<DetectionRuleService> _logger;
    private readonly EvaluationGatherer _gatherer;
    private readonly AlertSuppressor _suppressor;
    private readonly AlertFactory _alerts;
    private readonly SemaphoreSlim _oneRunAtATime = new(1, 1);
    private readonly Lock _problemsGate = new();
    private readonly CancellationTokenSource _stopping = new();
    private ITimer? _timer;
    private SnapshotDatabase? _tables;
    private string _lastProblems = string.Empty;
    private long _partialAlerts;
    private volatile bool _evaluatedOnce;

    public DetectionRuleService(
        IOptions<CoordinationOptions> options,
        TaskCoordinator coordinator,
        IBusPublisher publisher,
        TimeProvider time,
        ILogger<DetectionRuleService> logger,
        ILoggerFactory? loggers = null,
        EventRuleService? events = null)
    {
        Events = events;
        _coordination = options.Value;
        _options = options.Value.Rules;
        _coordinator = coordinator;
        _publisher = publisher;
        _time = time;
        _logger = logger;
        _gatherer = new EvaluationGatherer(coordinator, _options, time);
        _suppressor = new AlertSuppressor(time, _options.Suppression);
        _alerts = new AlertFactory(time);
        Readiness = new RuleReadiness(coordinator, (loggers ?? NullLoggerFactory.Instance).CreateLogger<RuleReadiness>());
    }

    public string Directory => _options.Directory;

    public double IntervalSeconds => _options.IntervalSeconds;

    public RuleReadiness Readiness { get; }

    /// <summary>The event rules' service (kind: event), when the agent runs one.</summary>
    public EventRuleService? Events { get; }

    /// <summary>Alerts published with partial data, and alerts suppressed as duplicates, since start.</summary>
    public (long Partial, long Suppressed) AlertCounters => (Interlocked.Read(ref _partialAlerts), _suppressor.Suppressed);

    public Task StartAsync(CancellationToken cancellationToken)
    {
        var (rules, _) = Load();
        var directory = Path.GetFullPath(_options.Directory);
        LogLoaded(_logger, rules.Count, directory, _options.IntervalSeconds);
        _coordinator.InstancesChanged += OnInstancesChanged;
        if (_options.IntervalSeconds > 0)
        {
            _timer = _time.CreateTimer(_ => _ = RunScheduledAsync(), null, _options.Interval, _options.Interval);
        }

        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        _coordinator.InstancesChanged -= OnInstancesChanged;
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
        lock (_problemsGate)
        {
            if (!string.Equals(summary, _lastProblems, StringComparison.Ordinal))
            {
                _lastProblems = summary;
                foreach (var problem in problems)
                {
                    LogProblem(_logger, problem.ToString());
                }
            }
        }

        return (rules, problems);
    }

    /// <summary>The loaded rules with what they read and whether they can run now.</summary>
    public (IReadOnlyList<RuleState> Rules, List<RuleProblem> Problems) States()
    {
        var (rules, problems) = Load();
        return (Readiness.Assess(rules), problems);
    }

    /// <summary>
    /// A collector came or went: which rules wait may have changed (logged at once, off the caller's
    /// thread). Not before the first run: at start-up the collectors register one by one, and a rule
    /// is not "waiting" for a collector that is still on its way.
    /// </summary>
    private void OnInstancesChanged()
    {
        if (_evaluatedOnce)
        {
            ThreadPool.UnsafeQueueUserWorkItem(static self => self.Reassess(), this, preferLocal: false);
        }
    }

    private void Reassess()
    {
        try
        {
            States();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }
    }

    private async Task RunScheduledAsync()
    {
        try
        {
            var report = await RunAsync(null, _stopping.Token);
            var waiting = report.Outcomes.Count(o => o.WaitingFor.Count > 0);
            var evaluated = report.Outcomes.Count - waiting;
            var evaluationId = report.Evaluation?.Correlation.CorrelationId ?? "-";
            LogRun(_logger, evaluated, waiting, report.Processes, report.AlertsPublished, evaluationId, report.TableChanges.Summary);
        }
        catch (TaskFailedException ex)
        {
            LogSnapshotFailed(_logger, ex.Message);
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
        }
        catch (Exception ex)
        {
            LogRunFailed(_logger, ex);
        }
    }

    public void Dispose()
    {
        _timer?.Dispose();
        _tables?.Dispose();
        _stopping.Dispose();
        _oneRunAtATime.Dispose();
    }

    [LoggerMessage(EventId = 5100, Level = LogLevel.Information, Message = "Detection rules: {Count} loaded from {Directory}; interval {IntervalSeconds} s (0 = on demand only)")]
    private static partial void LogLoaded(ILogger logger, int count, string directory, double intervalSeconds);

    [LoggerMessage(EventId = 5101, Level = LogLevel.Warning, Message = "Detection rule not loaded: {Problem}")]
    private static partial void LogProblem(ILogger logger, string problem);

    [LoggerMessage(EventId = 5102, Level = LogLevel.Warning, Message = "Detection rule {RuleId} ({File}:{Line}) {Error}")]
    private static partial void LogRuleFailed(ILogger logger, string ruleId, string file, int line, string error);

    [LoggerMessage(EventId = 5103, Level = LogLevel.Information, Message = "Detection rules ran: {Rules} rule(s) evaluated, {Waiting} waiting, over {Processes} process(es), {Alerts} alert(s) published (evaluation {EvaluationId}); tables: {TableChanges}")]
    private static partial void LogRun(ILogger logger, int rules, int waiting, int processes, int alerts, string evaluationId, string tableChanges);

    [LoggerMessage(EventId = 5104, Level = LogLevel.Warning, Message = "Detection rules did not run: no collector returned data: {Reason}")]
    private static partial void LogSnapshotFailed(ILogger logger, string reason);

    [LoggerMessage(EventId = 5105, Level = LogLevel.Error, Message = "Detection rule run failed")]
    private static partial void LogRunFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 5106, Level = LogLevel.Warning, Message = "Detection rule {RuleId}: {Count} more matching row(s) not published (coordination.rules.max_alerts_per_rule is {Max})")]
    private static partial void LogAlertsCapped(ILogger logger, string ruleId, long count, int max);

    [LoggerMessage(EventId = 5107, Level = LogLevel.Warning, Message = "Detection rules: {Problem}")]
    private static partial void LogUnexpectedPayload(ILogger logger, Untrusted problem);

    [LoggerMessage(EventId = 5108, Level = LogLevel.Warning, Message = "Detection rule {RuleId} not evaluated: no data for {TaskType}: {Reason}")]
    private static partial void LogNoData(ILogger logger, string ruleId, string taskType, Untrusted reason);
}
