using DaemonEye.Gateway.Rpc;
using DaemonEye.Protocol.Alert.V1;

namespace DaemonEye.Coordination;

/// <summary>
/// Builds an Alert from a matching row: the row's fields, and the chain that produced it — the
/// evaluation's correlation (the root of the tasks), one <see cref="AlertSource"/> per collector result
/// of every task the rule needed (and one marked missing per collector type that did not answer).
/// </summary>
internal sealed class AlertFactory(TimeProvider time)
{
    public Alert Create(DetectionRule rule, RuleNeeds needs, IReadOnlyList<string> columns, string?[] row, Evaluation evaluation, IReadOnlyList<EvaluationTask> tasks, string key, uint suppressedBefore)
    {
        // task_id / task_correlation_id (older readers): the process snapshot when the rule reads processes, else the first task.
        var first = tasks.FirstOrDefault(t => t.TaskType == SnapshotDatabase.ProcessSnapshotTaskType)?.Result ?? tasks.Select(t => t.Result).FirstOrDefault(r => r is not null);
        var alert = new Alert
        {
            AlertId = Correlation.NewId(),
            RuleId = rule.Id,
            RuleName = rule.Name,
            Severity = rule.Severity,
            Description = rule.Description,
            TaskId = first?.TaskId ?? string.Empty,
            TaskCorrelationId = first?.CorrelationId ?? string.Empty,
            RootCorrelationId = evaluation.Correlation.RootCorrelationId,
            EvaluationCorrelationId = evaluation.Correlation.CorrelationId,
            RaisedUnixMs = (ulong)time.GetUtcNow().ToUnixTimeMilliseconds(),
            RuleFile = rule.File,
            PartialSnapshot = tasks.Any(t => t.Partial),
            RuleKind = RuleFiles.SnapshotKind,
            SuppressedBefore = suppressedBefore,
            DedupKey = key,
        };
        alert.Tables.AddRange(needs.Tables);
        alert.TaskTypes.AddRange(needs.TaskTypes);
        foreach (var task in tasks)
        {
            var result = task.Result;
            foreach (var answer in result?.Results ?? [])
            {
                alert.Collectors.Add(answer.CollectorId);
                alert.Sources.Add(new AlertSource
                {
                    TaskId = result!.TaskId,
                    TaskType = task.TaskType,
                    TaskCorrelationId = result.CorrelationId,
                    CollectorId = answer.CollectorId,
                    Sequence = answer.Sequence,
                    PayloadType = answer.PayloadType,
                });
            }

            foreach (var missing in result?.Missing ?? [])
            {
                alert.Sources.Add(new AlertSource
                {
                    TaskId = result!.TaskId,
                    TaskType = task.TaskType,
                    TaskCorrelationId = result.CorrelationId,
                    CollectorType = missing.CollectorType,
                    CollectorId = missing.InstanceId,
                    Missing = true,
                    MissingReason = missing.Reason,
                });
            }
        }

        for (var i = 0; i < columns.Count; i++)
        {
            alert.Fields.Add(new AlertField { Name = columns[i], Value = row[i] ?? string.Empty, IsNull = row[i] is null });
        }

        return alert;
    }

    /// <summary>
    /// An event rule's alert: the row's fields, the tables it read (the event windows), and the chain
    /// event evaluation (root) → alert; rule_kind "event". Which collectors published the events is in
    /// the row when the rule selects their collector_id columns, and gathered into <c>collectors</c>.
    /// </summary>
    public Alert CreateEvent(DetectionRule rule, RuleNeeds needs, IReadOnlyList<string> columns, string?[] row, Protocol.V1.CorrelationMetadata evaluation, string key, uint suppressedBefore)
    {
        var alert = new Alert
        {
            AlertId = Correlation.NewId(),
            RuleId = rule.Id,
            RuleName = rule.Name,
            Severity = rule.Severity,
            Description = rule.Description,
            RootCorrelationId = evaluation.RootCorrelationId,
            EvaluationCorrelationId = evaluation.CorrelationId,
            RaisedUnixMs = (ulong)time.GetUtcNow().ToUnixTimeMilliseconds(),
            RuleFile = rule.File,
            RuleKind = RuleFiles.EventKind,
            SuppressedBefore = suppressedBefore,
            DedupKey = key,
        };
        alert.Tables.AddRange(needs.Tables);
        var collectors = new SortedSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < columns.Count; i++)
        {
            alert.Fields.Add(new AlertField { Name = columns[i], Value = row[i] ?? string.Empty, IsNull = row[i] is null });
            if (row[i] is { Length: > 0 } value && columns[i].EndsWith("collector_id", StringComparison.OrdinalIgnoreCase))
            {
                collectors.Add(value);
            }
        }

        alert.Collectors.AddRange(collectors);
        return alert;
    }

    /// <summary>The de-duplication key: the rule's key columns' values (all columns when it names none, or names one the row lacks).</summary>
    public static string KeyOf(DetectionRule rule, IReadOnlyList<string> columns, string?[] row)
    {
        var indexes = rule.Key.Select(k => IndexOf(columns, k)).ToList();
        if (indexes.Count == 0 || indexes.Contains(-1))
        {
            indexes = [.. Enumerable.Range(0, columns.Count)];
        }

        return string.Join('\u001f', indexes.Select(i => row[i] ?? "\u0000"));
    }

    private static int IndexOf(IReadOnlyList<string> columns, string name)
    {
        for (var i = 0; i < columns.Count; i++)
        {
            if (string.Equals(columns[i], name, StringComparison.OrdinalIgnoreCase))
            {
                return i;
            }
        }

        return -1;
    }
}
