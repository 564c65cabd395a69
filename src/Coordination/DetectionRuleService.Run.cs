using DaemonEye.Gateway.Rpc;
using DaemonEye.Protocol.V1;
using Google.Protobuf;

namespace DaemonEye.Coordination;

/// <summary>Runs: one evaluation of every rule (alerts published), and one rule on trial (nothing published).</summary>
internal sealed partial class DetectionRuleService
{
    /// <summary>
    /// One run of every ready rule over one fresh evaluation, alerts published. The tables stay from
    /// one run to the next; each run applies what changed since the previous one (the first: all).
    /// </summary>
    /// <exception cref="TaskFailedException">Rules needed data and no collector returned any.</exception>
    public async Task<RuleRunReport> RunAsync(CorrelationMetadata? parent, CancellationToken cancellationToken)
    {
        await _oneRunAtATime.WaitAsync(cancellationToken);
        try
        {
            var (all, problems) = States();
            var states = all.Where(s => !s.Rule.IsEvent).ToList();
            var evaluation = await GatherAsync(states.Where(s => !s.Waiting), parent, cancellationToken);
            var database = _tables ??= SnapshotDatabase.CreateResident();
            var changes = database.Update(evaluation.Data);
            var outcomes = new List<RuleOutcomeReport>();
            int published = 0, partialAlerts = 0, suppressed = 0;
            foreach (var state in states)
            {
                var rule = state.Rule;
                if (state.Waiting)
                {
                    outcomes.Add(new RuleOutcomeReport(rule, NotEvaluated) { Needs = state.Needs, WaitingFor = state.WaitingFor });
                    continue;
                }

                var tasks = state.Needs.TaskTypes.Select(t => evaluation.Tasks[t]).ToList();
                if (tasks.Find(t => t.NoData) is { } empty)
                {
                    LogNoData(_logger, rule.Id, empty.TaskType, empty.Reason);
                    outcomes.Add(new RuleOutcomeReport(rule, NotEvaluated with { Error = $"not evaluated: no data for {empty.TaskType}: {empty.Reason}" }) { Needs = state.Needs, Partial = true });
                    continue;
                }

                var partial = tasks.Exists(t => t.Partial);
                var result = database.Evaluate(rule.Sql, _options.TimeLimit, _time, _options.MaxAlertsPerRule);
                if (result.Error is not null)
                {
                    LogRuleFailed(_logger, rule.Id, rule.File, rule.Line, result.Error);
                    outcomes.Add(new RuleOutcomeReport(rule, result) { Needs = state.Needs, Partial = partial });
                    continue;
                }

                int rulePublished = 0, ruleSuppressed = 0;
                foreach (var row in result.Rows)
                {
                    var key = AlertFactory.KeyOf(rule, result.Columns, row);
                    if (!_suppressor.ShouldPublish(rule.Id, key, out var before))
                    {
                        ruleSuppressed++;
                        continue;
                    }

                    var alert = _alerts.Create(rule, state.Needs, result.Columns, row, evaluation, tasks, key, before);
                    var correlation = Correlation.ChildOf(evaluation.Correlation);
                    correlation.WorkflowStage = "alert";
                    correlation.Tags["rule_id"] = rule.Id;
                    await _publisher.PublishAsync(AlertTopicPrefix + rule.Severity, alert.ToByteString(), AlertContentType, correlation, cancellationToken);
                    rulePublished++;
                    if (partial)
                    {
                        partialAlerts++;
                        Interlocked.Increment(ref _partialAlerts);
                    }
                }

                if (result.TotalRows > result.Rows.Count)
                {
                    LogAlertsCapped(_logger, rule.Id, result.TotalRows - result.Rows.Count, _options.MaxAlertsPerRule);
                }

                published += rulePublished;
                suppressed += ruleSuppressed;
                outcomes.Add(new RuleOutcomeReport(rule, result) { Needs = state.Needs, Partial = partial, Published = rulePublished, Suppressed = ruleSuppressed });
            }

            _evaluatedOnce = true;
            return new RuleRunReport(evaluation, database.Processes, outcomes, problems, published)
            {
                TableRows = database.TableRows,
                TableChanges = changes,
                PartialAlerts = partialAlerts,
                SuppressedAlerts = suppressed,
            };
        }
        finally
        {
            _oneRunAtATime.Release();
        }
    }

    /// <summary>One rule (the text of a rule file) over a fresh evaluation of what it reads; nothing is published.</summary>
    public async Task<RuleTestReport> TestAsync(string file, string content, CorrelationMetadata? parent, CancellationToken cancellationToken)
    {
        var (rules, problems) = RuleLoader.Parse(file, content);
        if (problems.Count > 0)
        {
            return new RuleTestReport(null, problems, null, null, 0, null);
        }

        if (rules.Count != 1)
        {
            return new RuleTestReport(null, [new RuleProblem(file, 1, null, $"holds {rules.Count} rules; rules test runs exactly one")], null, null, 0, null);
        }

        var rule = rules[0];
        var state = Readiness.Assess([rule])[0];
        if (rule.IsEvent)
        {
            if (Events is null)
            {
                return new RuleTestReport(rule, [new RuleProblem(file, rule.Line, rule.Id, "is an event rule, and this agent runs no event windows")], null, null, 0, state);
            }

            var (windowResult, windowRows) = Events.Test(rule);
            var windowProblems = windowResult.Error is null ? new List<RuleProblem>() : [new RuleProblem(file, rule.Line, rule.Id, windowResult.Error)];
            return new RuleTestReport(rule, windowProblems, windowResult, null, 0, state) { TableRows = windowRows };
        }

        if (state.Waiting)
        {
            return new RuleTestReport(rule, [new RuleProblem(file, rule.Line, rule.Id, $"is waiting: it needs task type(s) {string.Join(", ", state.WaitingFor)}, which no running collector offers")], null, null, 0, state);
        }

        var evaluation = await GatherAsync([state], parent, cancellationToken);
        using var database = SnapshotDatabase.Create(evaluation.Data);
        var result = database.Evaluate(rule.Sql, _options.TimeLimit, _time, 10_000);
        var found = result.Error is null ? new List<RuleProblem>() : [new RuleProblem(file, rule.Line, rule.Id, result.Error)];
        foreach (var task in evaluation.Tasks.Values.Where(t => t.Partial))
        {
            found.Add(new RuleProblem(file, rule.Line, rule.Id, $"partial data for {task.TaskType}: {task.Reason}"));
        }

        return new RuleTestReport(rule, found, result, evaluation, database.Processes, state) { TableRows = database.TableRows };
    }

    private static readonly RuleEvaluation NotEvaluated = new([], [], 0, TimeSpan.Zero, null);

    /// <summary>The evaluation the ready rules need; fails when they need data and no collector returned any.</summary>
    private async Task<Evaluation> GatherAsync(IEnumerable<RuleState> ready, CorrelationMetadata? parent, CancellationToken cancellationToken)
    {
        var types = ready.SelectMany(s => s.Needs.TaskTypes).ToHashSet(StringComparer.Ordinal);
        var evaluation = await _gatherer.GatherAsync(types, _coordination.Rules.EffectiveWatchLists, parent, cancellationToken);
        foreach (var skipped in evaluation.Skipped)
        {
            LogUnexpectedPayload(_logger, skipped);
        }

        if (types.Count > 0 && evaluation.Tasks.Values.All(t => t.NoData))
        {
            var first = evaluation.Tasks.Values.Select(t => t.Result).FirstOrDefault(r => r is not null);
            var failure = evaluation.Tasks.Values.Select(t => t.Failure).FirstOrDefault(f => f is not null);
            throw new TaskFailedException(RpcErrorKind.Timeout, failure is not null && evaluation.Tasks.Count == 1
                ? failure
                : $"no collector returned data ({string.Join("; ", evaluation.Tasks.Values.Select(t => $"{t.TaskType}: {t.Reason}"))}){(first is null ? string.Empty : $" (task {first.TaskId})")}");
        }

        return evaluation;
    }
}
