using DaemonEye.Gateway.Rpc;
using Google.Protobuf;

namespace DaemonEye.Coordination;

/// <summary>Event rules: which to run after a round, running them, and their alerts.</summary>
internal sealed partial class EventRuleService
{
    /// <summary>The event rules of the rules directory, re-read at most once a second (problems are the snapshot service's to log).</summary>
    public List<DetectionRule> Rules()
    {
        var now = _time.GetTimestamp();
        if (_rulesLoadedAt != long.MinValue && _time.GetElapsedTime(_rulesLoadedAt, now) < Tick)
        {
            return _rules;
        }

        try
        {
            _rules = [.. RuleLoader.LoadDirectory(_options.Directory).Rules.Where(r => r.IsEvent)];
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Kept as they were; the snapshot service reports the directory's problems.
        }

        _rulesLoadedAt = now;
        return _rules;
    }

    /// <summary>Past 10,000 remembered rows of a rule, forgets those not returned for longer than the longest window (their evidence is gone).</summary>
    private void ForgetStale(Dictionary<string, long> seen)
    {
        if (seen.Count < 10_000)
        {
            return;
        }

        var now = _time.GetTimestamp();
        foreach (var stale in seen.Where(e => _time.GetElapsedTime(e.Value, now) > Suppression).Select(e => e.Key).ToList())
        {
            seen.Remove(stale);
        }
    }

    /// <summary>Runs the event rules that read a table in <paramref name="changed"/>; publishes their alerts.</summary>
    private async Task EvaluateAsync(HashSet<string> changed, CancellationToken cancellationToken)
    {
        var evaluation = Correlation.ChildOf(null);
        evaluation.WorkflowStage = "event-evaluation";
        foreach (var rule in Rules())
        {
            var needs = RuleRequirements.OfEvent(rule.Sql);
            if (!needs.Tables.Any(changed.Contains))
            {
                continue;
            }

            RuleEvaluation result;
            lock (_windowsGate)
            {
                // Every row, not the first max_alerts_per_rule: the rule sees its whole window, so rows it
                // raised in earlier rounds come first and would crowd the new ones out of a capped read.
                result = _windows.Evaluate(rule.Sql, _options.TimeLimit, int.MaxValue);
            }

            Interlocked.Increment(ref _evaluations);
            if (result.Error is not null)
            {
                Interlocked.Increment(ref _ruleErrors);
                LogRuleFailed(_logger, rule.Id, rule.File, rule.Line, result.Error);
                continue;
            }

            var seen = _matched.TryGetValue(rule.Id, out var rows) ? rows : _matched[rule.Id] = new Dictionary<string, long>(StringComparer.Ordinal);
            long fresh = 0;
            foreach (var row in result.Rows)
            {
                // A rule sees its whole window each round: a row it returned before is the same evidence, not a new finding.
                var identity = string.Join('\u001f', row.Select(v => v ?? "\u0000"));
                var now = _time.GetTimestamp();
                if (seen.TryAdd(identity, now) is false)
                {
                    seen[identity] = now;
                    Interlocked.Increment(ref _rematched);
                    continue;
                }

                // New rows past max_alerts_per_rule in one round are counted and logged, not published (as for snapshot rules).
                if (++fresh > _options.MaxAlertsPerRule)
                {
                    continue;
                }

                var key = AlertFactory.KeyOf(rule, result.Columns, row);
                if (!_suppressor.ShouldPublish(rule.Id, key, out var before))
                {
                    continue;
                }

                var alert = _alerts.CreateEvent(rule, needs, result.Columns, row, evaluation, key, before);
                var correlation = Correlation.ChildOf(evaluation);
                correlation.WorkflowStage = "alert";
                correlation.Tags["rule_id"] = rule.Id;
                await _publisher.PublishAsync(DetectionRuleService.AlertTopicPrefix + rule.Severity, alert.ToByteString(), DetectionRuleService.AlertContentType, correlation, cancellationToken);
                Interlocked.Increment(ref _published);
            }

            ForgetStale(seen);
            if (fresh > _options.MaxAlertsPerRule)
            {
                LogAlertsCapped(_logger, rule.Id, fresh - _options.MaxAlertsPerRule, _options.MaxAlertsPerRule);
            }
        }
    }
}
