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
        var (loaded, problems) = rules.Load();
        var response = new RulesListResponse { Directory = Path.GetFullPath(rules.Directory), IntervalSeconds = rules.IntervalSeconds };
        response.Rules.AddRange(loaded.Select(ToInfo));
        response.Problems.AddRange(problems.Select(ToProblem));
        return response;
    }

    private async Task<RulesTestResponse> TestAsync(RulesTestRequest request, CorrelationMetadata? parent, CancellationToken cancellationToken)
    {
        var name = request.FileName.Length > 0 ? request.FileName : "(rule)";
        var (rule, problems, evaluation, snapshot, processes) = await rules.TestAsync(name, request.Content, parent, cancellationToken);
        var response = new RulesTestResponse { Processes = (uint)processes };
        if (rule is not null)
        {
            response.Rule = ToInfo(rule);
        }

        response.Problems.AddRange(problems.Select(ToProblem));
        if (snapshot is not null)
        {
            response.Snapshot = WithoutPayloads(snapshot);
        }

        if (evaluation is not null)
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
            Snapshot = WithoutPayloads(report.Snapshot),
            Processes = (uint)report.Processes,
        };
        response.Problems.AddRange(report.Problems.Select(ToProblem));
        foreach (var (rule, evaluation) in report.Outcomes)
        {
            response.Outcomes.Add(new RuleOutcome
            {
                RuleId = rule.Id,
                Matches = (uint)evaluation.TotalRows,
                EvaluationUs = (ulong)evaluation.Elapsed.TotalMicroseconds,
                Error = evaluation.Error ?? string.Empty,
            });
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

    private static RuleInfo ToInfo(DetectionRule rule) => new()
    {
        Id = rule.Id,
        Name = rule.Name,
        Severity = rule.Severity,
        Description = rule.Description,
        Sql = rule.Sql,
        File = rule.File,
        Line = (uint)rule.Line,
    };

    private static Protocol.Ipc.V1.RuleProblem ToProblem(RuleProblem problem) => new()
    {
        File = problem.File,
        Line = (uint)Math.Max(0, problem.Line),
        RuleId = problem.RuleId ?? string.Empty,
        Message = problem.Message,
    };
}
