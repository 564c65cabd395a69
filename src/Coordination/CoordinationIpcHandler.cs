using DaemonEye.Gateway.Ipc;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.Task.V1;
using DaemonEye.Protocol.V1;

namespace DaemonEye.Coordination;

/// <summary>The IPC operations of coordination: task_run, rules_list, rules_test, rules_run.</summary>
internal sealed class CoordinationIpcHandler(TaskCoordinator coordinator, DetectionRuleService rules, Gateway.IAgentControl control) : IIpcRequestHandler
{
    public IReadOnlyCollection<IpcRequest.BodyOneofCase> Handles { get; } =
        [IpcRequest.BodyOneofCase.TaskRun, IpcRequest.BodyOneofCase.RulesList, IpcRequest.BodyOneofCase.RulesTest, IpcRequest.BodyOneofCase.RulesRun];

    public async Task<IpcResponse> HandleAsync(IpcRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        try
        {
            return request.BodyCase switch
            {
                IpcRequest.BodyOneofCase.TaskRun => new IpcResponse { TaskRun = await RunTaskAsync(request.TaskRun, request.Correlation, cancellationToken) },
                IpcRequest.BodyOneofCase.RulesList => new IpcResponse { RulesList = List() },
                IpcRequest.BodyOneofCase.RulesTest => new IpcResponse { RulesTest = await TestAsync(request.RulesTest, request.Correlation, cancellationToken) },
                IpcRequest.BodyOneofCase.RulesRun => new IpcResponse { RulesRun = await RunRulesAsync(request.Correlation, cancellationToken) },
                _ => new IpcResponse { Error = new RpcError { Kind = RpcErrorKind.InvalidOperation, Message = $"{request.BodyCase} is not a coordination request" } },
            };
        }
        catch (TaskFailedException ex)
        {
            return new IpcResponse { Error = new RpcError { Kind = ex.Kind, Message = ex.Message } };
        }
    }

    private async Task<AggregatedTaskResult> RunTaskAsync(TaskRunRequest request, CorrelationMetadata? parent, CancellationToken cancellationToken)
    {
        if (await UndeclaredAsync(request.TaskType, cancellationToken) is { } reason)
        {
            throw new TaskFailedException(RpcErrorKind.NotFound, reason);
        }

        var spec = new TaskSpec(request.TaskType, request.Parameters, request.Priority, request.TimeoutMs > 0 ? TimeSpan.FromMilliseconds(request.TimeoutMs) : null);
        return await coordinator.RunAsync(spec, parent, cancellationToken);
    }

    /// <summary>
    /// Why the operator's task cannot run, known at once: no connected collector declares its type and
    /// none is on its way up (configured and not yet registered, starting, or restarting after a crash)
    /// that might. Null otherwise: the coordinator takes it (and waits for a collector that is coming).
    /// </summary>
    private async Task<string?> UndeclaredAsync(string taskType, CancellationToken cancellationToken)
    {
        if (taskType.Length == 0 || coordinator.InstancesFor(taskType).Count > 0)
        {
            return null;
        }

        var collectors = await control.ListCollectorsAsync(cancellationToken);
        if (collectors.Any(c => c.State is CollectorState.Registered or CollectorState.Starting && c.Enabled
            || c.State is CollectorState.Stopped && c.Health is CollectorHealth.Unhealthy))
        {
            return null;
        }

        var declared = collectors
            .SelectMany(c => c.Capabilities.Where(k => k.StartsWith("task:", StringComparison.Ordinal)).Select(k => (Type: k["task:".Length..], c.Id)))
            .GroupBy(x => x.Type, StringComparer.Ordinal)
            .OrderBy(g => g.Key, StringComparer.Ordinal)
            .Select(g => $"{g.Key} ({string.Join(", ", g.Select(x => x.Id).Order(StringComparer.Ordinal))})")
            .ToList();
        return $"no running collector declares task type '{taskType}', and none is starting; declared task types: {(declared.Count == 0 ? "none" : string.Join(", ", declared))}. A collector executes the types it declares as task:<type> in its Hello (`daemoneye-cli collectors list --json`, capabilities)";
    }

    private RulesListResponse List()
    {
        var (states, problems) = rules.States();
        var response = new RulesListResponse { Directory = Path.GetFullPath(rules.Directory), IntervalSeconds = rules.IntervalSeconds };
        response.Rules.AddRange(states.Select(ToInfo));
        response.Problems.AddRange(problems.Select(ToProblem));
        if (rules.Events is { } events)
        {
            var status = events.Status();
            var info = new EventRulesStatus
            {
                BatchesReceived = (ulong)status.BatchesReceived,
                MessagesReceived = (ulong)status.MessagesReceived,
                MessagesDropped = (ulong)status.MessagesDropped,
                MessagesUndecodable = (ulong)status.MessagesUndecodable,
                Rounds = (ulong)status.Rounds,
                Evaluations = (ulong)status.Evaluations,
                RuleErrors = (ulong)status.RuleErrors,
                AlertsPublished = (ulong)status.AlertsPublished,
                AlertsSuppressed = (ulong)status.AlertsSuppressed,
                DebounceMs = status.Debounce.TotalMilliseconds,
                SuppressionSeconds = status.Suppression.TotalSeconds,
                RowsRematched = (ulong)status.RowsRematched,
            };
            info.Topics.AddRange(EventRuleService.Topics);
            info.Windows.AddRange(status.Windows.Select(w => new EventWindowInfo
            {
                Table = w.Table,
                Rows = (ulong)w.Rows,
                MaxAgeSeconds = w.MaxAge.TotalSeconds,
                MaxRows = (ulong)w.MaxRows,
                Appended = (ulong)w.Appended,
                AgedOut = (ulong)w.AgedOut,
                Overflowed = (ulong)w.Overflowed,
            }));
            response.EventRules = info;
        }

        return response;
    }

    private async Task<RulesTestResponse> TestAsync(RulesTestRequest request, CorrelationMetadata? parent, CancellationToken cancellationToken)
    {
        var name = request.FileName.Length > 0 ? request.FileName : "(rule)";
        var report = await rules.TestAsync(name, request.Content, parent, cancellationToken);
        var response = new RulesTestResponse { Processes = (uint)report.Processes };
        if (report.Rule is not null)
        {
            response.Rule = report.State is { } state ? ToInfo(state) : ToInfo(report.Rule);
        }

        response.Problems.AddRange(report.Problems.Select(ToProblem));
        if (report.Data is { } data)
        {
            response.Tasks.AddRange(data.Tasks.Values.Select(t => t.Result).OfType<AggregatedTaskResult>().Select(WithoutPayloads));
            if (data.Tasks.GetValueOrDefault(SnapshotDatabase.ProcessSnapshotTaskType)?.Result is { } snapshot)
            {
                response.Snapshot = WithoutPayloads(snapshot);
            }
        }

        foreach (var (table, count) in report.TableRows)
        {
            response.TableRows[table] = (uint)count;
        }

        if (report.Evaluation is { } evaluation)
        {
            response.EvaluationUs = (ulong)evaluation.Elapsed.TotalMicroseconds;
            response.Columns.AddRange(evaluation.Columns);
            foreach (var row in evaluation.Rows)
            {
                var r = new RuleRow();
                r.Values.AddRange(row.Select(v => v ?? string.Empty));
                response.Rows.Add(r);
            }
        }

        return response;
    }

    private async Task<RulesRunResponse> RunRulesAsync(CorrelationMetadata? parent, CancellationToken cancellationToken)
    {
        var report = await rules.RunAsync(parent, cancellationToken);
        var response = new RulesRunResponse
        {
            AlertsPublished = (uint)report.AlertsPublished,
            Processes = (uint)report.Processes,
            PartialAlerts = (uint)report.PartialAlerts,
            SuppressedAlerts = (uint)report.SuppressedAlerts,
            EvaluationCorrelationId = report.Evaluation?.Correlation.CorrelationId ?? string.Empty,
            FullLoad = report.TableChanges.FullLoad,
        };
        foreach (var (table, count) in report.TableRows)
        {
            response.TableRows[table] = (uint)count;
        }

        foreach (var (table, change) in report.TableChanges.Tables)
        {
            response.TableChanges[table] = new TableChange { Inserted = (uint)change.Inserted, Updated = (uint)change.Updated, Deleted = (uint)change.Deleted };
        }

        if (report.Snapshot is { } snapshot)
        {
            response.Snapshot = WithoutPayloads(snapshot);
        }

        response.Tasks.AddRange((report.Evaluation?.Tasks.Values ?? []).Select(t => t.Result).OfType<AggregatedTaskResult>().Select(WithoutPayloads));
        response.Problems.AddRange(report.Problems.Select(ToProblem));
        foreach (var outcome in report.Outcomes)
        {
            var o = new RuleOutcome
            {
                RuleId = outcome.Rule.Id,
                Matches = (uint)outcome.Evaluation.TotalRows,
                EvaluationUs = (ulong)outcome.Evaluation.Elapsed.TotalMicroseconds,
                Error = outcome.WaitingFor.Count > 0
                    ? $"waiting: needs task type(s) {string.Join(", ", outcome.WaitingFor)}, which no running collector offers"
                    : outcome.Evaluation.Error ?? string.Empty,
                State = outcome.WaitingFor.Count > 0 ? "waiting" : "ready",
                Partial = outcome.Partial,
            };
            o.WaitingFor.AddRange(outcome.WaitingFor);
            response.Outcomes.Add(o);
        }

        return response;
    }

    private static AggregatedTaskResult WithoutPayloads(AggregatedTaskResult snapshot)
    {
        var copy = snapshot.Clone();
        foreach (var result in copy.Results)
        {
            result.Payload = Google.Protobuf.ByteString.Empty;
        }

        return copy;
    }

    private static RuleInfo ToInfo(RuleState state)
    {
        var info = ToInfo(state.Rule);
        info.Tables.AddRange(state.Needs.Tables);
        info.TaskTypes.AddRange(state.Needs.TaskTypes);
        info.State = state.State;
        info.WaitingFor.AddRange(state.WaitingFor);
        return info;
    }

    private static RuleInfo ToInfo(DetectionRule rule) => new()
    {
        Id = rule.Id,
        Name = rule.Name,
        Severity = rule.Severity,
        Description = rule.Description,
        Sql = rule.Sql,
        File = rule.File,
        Line = (uint)rule.Line,
        Kind = rule.Kind,
    };

    private static Protocol.Ipc.V1.RuleProblem ToProblem(RuleProblem problem) => new()
    {
        File = problem.File,
        Line = (uint)Math.Max(0, problem.Line),
        RuleId = problem.RuleId ?? string.Empty,
        Message = problem.Message,
    };
}
