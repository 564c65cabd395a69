using System.Text.RegularExpressions;
using DaemonEye.Client;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.Process.V1;
using DaemonEye.Topics;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// The shipped rules on a machine where this test does nothing: after the first evaluation (the
/// machine as it was, which may hold findings of its own) no rule fires for a run of evaluations.
/// Then netmond is stopped: the rules that need network.snapshot report waiting (rules list, health,
/// the log) and are ready again when netmond is back.
/// </summary>
public sealed partial class ShippedRulesIdleEndToEndTests
{
    private const int IdleEvaluations = 10;

    [RootFact("the real fsmond (fanotify) and procmond reading every process's descriptors")]
    public async Task No_rule_fires_while_idle_and_network_rules_wait_for_netmond_and_recover()
    {
        await using var shipped = await ShippedRulesAgent.StartAsync();
        var agent = shipped.Agent;

        // Idle: the evaluations after the baseline raise nothing (a condition that persists is suppressed, a new one is a finding).
        // Every complete evaluation in log order; the first is the baseline, the next ones the idle window.
        var evaluations = new List<string>();
        while (evaluations.Count < IdleEvaluations + 1)
        {
            var line = await agent.WaitForLineAsync(l => EvaluationLine().Match(l) is { Success: true } m && !evaluations.Contains(m.Groups[1].Value), includeEarlier: true).WaitAsync(ShippedRulesAgent.Patience);
            evaluations.Add(EvaluationLine().Match(line).Groups[1].Value);
        }

        var idle = evaluations.Skip(1).ToHashSet(StringComparer.Ordinal);
        var fired = shipped.Alerts.Where(a => idle.Contains(a.EvaluationCorrelationId)).ToList();
        Assert.True(fired.Count == 0, "idle, yet: " + string.Join("; ", fired.Select(ShippedRulesAgent.Describe)));

        // The event rules over the same window: fed (the machine's own execs and file and connection
        // events arrive), and no event alert at all.
        var firedByEvents = shipped.Alerts.Where(a => a.RuleKind == "event").ToList();
        Assert.True(firedByEvents.Count == 0, "idle, yet: " + string.Join("; ", firedByEvents.Select(ShippedRulesAgent.Describe)));
        // Fed: an idle host may exec nothing in the window, so this test execs /bin/true (after the idle
        // evaluations) and waits until procmond's exec event for it reaches a bus subscriber of its own
        // (Started: a child forked and exec'd is announced at its exec).
        // The registry orders each topic's targets by connection id, so the agent's own subscriber
        // (a negative id) has taken that batch before any socket got it.
        using var patience = new CancellationTokenSource(ShippedRulesAgent.Patience);
        await using (var client = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = "idle-exec-watch", AutoReconnect = false }, patience.Token))
        {
            await using var lifecycle = await client.SubscribeAsync(WellKnownTopics.ProcessLifecycle, patience.Token);
            using var exec = System.Diagnostics.Process.Start("/bin/true")!;
            var pid = (uint)exec.Id;
            await exec.WaitForExitAsync(patience.Token);
            await foreach (var message in lifecycle.ReadAllAsync(patience.Token))
            {
                var seen = ProcessLifecycle.Parser.ParseFrom(message.Payload.Span);
                if (seen.Kind is ProcessLifecycleKind.Started or ProcessLifecycleKind.Executed && seen.Process.Pid == pid)
                {
                    break;
                }
            }
        }

        var listed = (await IpcProbe.SendAsync(agent.IpcSocketPath, new IpcRequest { RulesList = new RulesListRequest() })).RulesList;
        Assert.Equal(["shell-stdin-tcp", "volatile-file-executed"], listed.Rules.Where(r => r.Kind == "event").Select(r => r.Id).Order(StringComparer.Ordinal));
        Assert.Equal(["connection_events", "process_events", "watch_lists"], listed.Rules.Single(r => r.Id == "shell-stdin-tcp").Tables);
        Assert.Equal("ready", listed.Rules.Single(r => r.Id == "shell-stdin-tcp").State);
        Assert.Equal(["process_events", "connection_events", "filesystem_events"], listed.EventRules.Windows.Select(w => w.Table));
        Assert.True(listed.EventRules.MessagesReceived > 0, $"the event windows received nothing: {listed.EventRules}");
        Assert.Equal(0UL, listed.EventRules.RuleErrors);
        Assert.Equal(0UL, listed.EventRules.AlertsPublished);

        // netmond stopped: the network rules wait, say so, and health is degraded.
        var waitingLogged = agent.WaitForLineAsync(l => l.Contains("Detection rule reverse-shell is waiting", StringComparison.Ordinal));
        var stop = await IpcProbe.CommandAsync(agent.IpcSocketPath, "netmond", CollectorAction.Stop);
        Assert.True(stop.Error is null, $"{stop.Error}");
        await waitingLogged.WaitAsync(ShippedRulesAgent.Patience);
        var rules = await RulesAsync(agent, r => r.State == "waiting", "reverse-shell", "new-wildcard-listener");
        Assert.All(rules, r => Assert.Equal(["network.snapshot"], r.WaitingFor));
        Assert.Equal(["connections", "processes", "watch_lists"], rules.Single(r => r.Id == "reverse-shell").Tables);
        Assert.Equal("ready", (await RulesAsync(agent, r => true, "process-deleted-executable")).Single().State);
        var health = (await IpcProbe.SendAsync(agent.IpcSocketPath, new IpcRequest { Health = new HealthRequest() })).Health;
        var check = Assert.Single(health.Checks, c => c.Name == "rules");
        Assert.Equal(HealthStatus.Degraded, check.Status);
        Assert.Contains("reverse-shell needs network.snapshot", check.Detail, StringComparison.Ordinal);
        var (code, stdout, _) = await CliProcess.RunAsync(agent.SocketPath, ShippedRulesAgent.Patience, "rules", "list");
        Assert.Contains(stdout, l => l.Contains("reverse-shell", StringComparison.Ordinal) && l.Contains("waiting", StringComparison.Ordinal));
        Assert.True(code is 0 or 1, $"rules list exit {code}");

        // netmond back: ready again, logged.
        var readyLogged = agent.WaitForLineAsync(l => l.Contains("Detection rule reverse-shell is ready again", StringComparison.Ordinal));
        var start = await IpcProbe.CommandAsync(agent.IpcSocketPath, "netmond", CollectorAction.Start);
        Assert.True(start.Error is null, $"{start.Error}");
        await readyLogged.WaitAsync(ShippedRulesAgent.Patience);
        await RulesAsync(agent, r => r.State == "ready", "reverse-shell", "new-wildcard-listener");
        await agent.WaitForLineAsync(l => l.Contains("Detection rules ran: 6 rule(s) evaluated, 0 waiting", StringComparison.Ordinal)).WaitAsync(ShippedRulesAgent.Patience);
    }

    /// <summary>rules list, asked again on each evaluation until the named rules satisfy the condition (or the patience runs out).</summary>
    private static async Task<List<RuleInfo>> RulesAsync(AgentProcess agent, Func<RuleInfo, bool> condition, params string[] ids)
    {
        using var deadline = new CancellationTokenSource(ShippedRulesAgent.Patience);
        while (true)
        {
            var listed = (await IpcProbe.SendAsync(agent.IpcSocketPath, new IpcRequest { RulesList = new RulesListRequest() }, deadline.Token)).RulesList;
            var rules = listed.Rules.Where(r => ids.Contains(r.Id)).ToList();
            if (rules.Count == ids.Length && rules.All(condition))
            {
                return rules;
            }

            // The next evaluation is the next chance for the state to change.
            await agent.WaitForLineAsync(l => l.Contains("Detection rules ran", StringComparison.Ordinal)).WaitAsync(deadline.Token);
        }
    }

    [GeneratedRegex(@"Detection rules ran: \d+ rule\(s\) evaluated, 0 waiting.*\(evaluation ([0-9a-f]{32})\)")]
    private static partial Regex EvaluationLine();
}
