using DaemonEye.Gateway.Health;
using DaemonEye.Protocol.Ipc.V1;

namespace DaemonEye.Coordination;

/// <summary>
/// The "rules" check of <c>daemoneye-cli health</c>: Degraded while a rule waits for a task type no
/// running collector offers (naming the rules and the types); Healthy otherwise (rule files that do
/// not load are named in the detail; `rules list` reports them and exits 1).
/// </summary>
internal sealed class RulesHealth(DetectionRuleService rules) : IAgentHealthContributor
{
    public Task<HealthCheckResult> CheckAsync(CancellationToken cancellationToken)
    {
        var (states, problems) = rules.States();
        var waiting = states.Where(s => s.Waiting).ToList();
        var (partial, suppressed) = rules.AlertCounters;
        var counters = $"; alerts with partial data: {partial}, suppressed as duplicates: {suppressed}";
        var result = new HealthCheckResult { Name = "rules" };
        if (waiting.Count > 0)
        {
            result.Status = HealthStatus.Degraded;
            result.Detail = $"{waiting.Count} of {states.Count} rule(s) waiting: " +
                string.Join("; ", waiting.Select(s => $"{s.Rule.Id} needs {string.Join(", ", s.WaitingFor)}, which no running collector offers")) + counters;
        }
        else if (problems.Count > 0)
        {
            // A file that does not load is the operator's to fix (rules list exits 1 naming it), not a degraded agent.
            result.Status = HealthStatus.Healthy;
            result.Detail = $"{states.Count} rule(s) ready; {problems.Count} problem(s) in rule files (rules list): {problems[0]}" + counters;
        }
        else
        {
            result.Status = HealthStatus.Healthy;
            result.Detail = $"{states.Count} rule(s) ready" + counters;
        }

        return Task.FromResult(result);
    }
}
