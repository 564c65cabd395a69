using DaemonEye.Logging;
using Microsoft.Extensions.Logging;

namespace DaemonEye.Coordination;

/// <summary>A rule with what it reads and, when it cannot run, the task types it waits for.</summary>
public sealed record RuleState(DetectionRule Rule, RuleNeeds Needs, IReadOnlyList<string> WaitingFor)
{
    public bool Waiting => WaitingFor.Count > 0;

    public string State => Waiting ? "waiting" : "ready";
}

/// <summary>
/// Whether each rule can run: every task type its tables need is offered (<c>task:&lt;type&gt;</c>)
/// by a connected collector instance. A rule that cannot is waiting: reported by <c>rules list</c>,
/// <c>rules run</c> and <c>health</c>, and logged once when it starts waiting and once when it
/// recovers. Thread-safe.
/// </summary>
internal sealed partial class RuleReadiness(TaskCoordinator coordinator, ILogger<RuleReadiness> logger)
{
    private readonly Lock _gate = new();
    private readonly Dictionary<string, string> _waiting = new(StringComparer.Ordinal);

    public IReadOnlyList<RuleState> Assess(IEnumerable<DetectionRule> rules)
    {
        var offered = coordinator.OfferedTaskTypes();
        var states = rules.Select(rule =>
        {
            var needs = RuleRequirements.Of(rule);
            return new RuleState(rule, needs, [.. needs.TaskTypes.Where(t => !offered.Contains(t))]);
        }).ToList();

        List<(RuleState State, bool Started)> changes = [];
        lock (_gate)
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var state in states)
            {
                seen.Add(state.Rule.Id);
                var waitingFor = string.Join(' ', state.WaitingFor);
                var was = _waiting.GetValueOrDefault(state.Rule.Id);
                if (state.Waiting && !string.Equals(was, waitingFor, StringComparison.Ordinal))
                {
                    _waiting[state.Rule.Id] = waitingFor;
                    changes.Add((state, true));
                }
                else if (!state.Waiting && was is not null)
                {
                    _waiting.Remove(state.Rule.Id);
                    changes.Add((state, false));
                }
            }

            foreach (var gone in _waiting.Keys.Where(id => !seen.Contains(id)).ToList())
            {
                _waiting.Remove(gone);
            }
        }

        foreach (var (state, started) in changes)
        {
            var types = string.Join(", ", started ? state.WaitingFor : state.Needs.TaskTypes);
            if (started)
            {
                var tables = string.Join(", ", state.Needs.Tables);
                LogWaiting(logger, state.Rule.Id, types, tables);
            }
            else
            {
                LogReady(logger, state.Rule.Id, types);
            }
        }

        return states;
    }

    [LoggerMessage(EventId = 5110, Level = LogLevel.Warning, Message = "Detection rule {RuleId} is waiting: it needs task type(s) {TaskTypes} (tables {Tables}), which no running collector offers; it is not evaluated until one does")]
    private static partial void LogWaiting(ILogger logger, string ruleId, Untrusted taskTypes, Untrusted tables);

    [LoggerMessage(EventId = 5111, Level = LogLevel.Information, Message = "Detection rule {RuleId} is ready again: every task type it needs ({TaskTypes}) is offered")]
    private static partial void LogReady(ILogger logger, string ruleId, Untrusted taskTypes);
}
