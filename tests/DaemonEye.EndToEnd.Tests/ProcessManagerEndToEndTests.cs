using System.Diagnostics;
using DaemonEye.Client;
using DaemonEye.Protocol.Collector.V1;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.V1;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// The effect of process_manager.* and rpc.default_timeout_seconds on the real agent supervising
/// real collector processes, and the relay of a collector's stdout and stderr into the agent's log.
/// Small intervals keep each test to a few seconds.
/// </summary>
public sealed class ProcessManagerEndToEndTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task A_collector_that_does_not_register_within_startup_timeout_seconds_is_killed_and_the_log_says_so()
    {
        var env = new Dictionary<string, string>
        {
            ["DAEMONEYE_COLLECTORS__0__ID"] = "silent",
            ["DAEMONEYE_COLLECTORS__0__EXECUTABLE"] = "/bin/sleep",
            ["DAEMONEYE_COLLECTORS__0__ARGUMENTS__0"] = "1000",
            ["DAEMONEYE_COLLECTORS__0__ENABLED"] = "false",
            ["DAEMONEYE_PROCESS_MANAGER__STARTUP_TIMEOUT_SECONDS"] = "0.5",
            ["DAEMONEYE_PROCESS_MANAGER__MAX_RESTART_ATTEMPTS"] = "0",
        };
        await using var agent = await AgentProcess.StartAsync(env);
        await using var client = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = "startup-watcher" });
        await using var lifecycle = await client.SubscribeAsync("control.collector.lifecycle");
        var logged = agent.WaitForLineAsync(l => l.Contains("Collector silent (pid ", StringComparison.Ordinal) && l.Contains(") did not register within 0.5 s; killing it", StringComparison.Ordinal));

        // The start command returns when start-up is over: after the 0.5 s timeout, not the default 30 s.
        var clock = Stopwatch.StartNew();
        var start = await IpcProbe.CommandAsync(agent.IpcSocketPath, "silent", CollectorAction.Start).WaitAsync(Patience);
        clock.Stop();

        Assert.Null(start.Error);
        Assert.Equal("collector 'silent' did not register within process_manager.startup_timeout_seconds (0.5 s); killed it", start.CollectorCommand.Message);
        Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(0.5), TimeSpan.FromSeconds(10));
        await logged.WaitAsync(Patience);

        var events = await ReadUntilAsync(lifecycle, e => e.State == "Failed");
        var spawned = events.First(e => e.State == "Starting" && e.Pid != 0);
        var failed = events[^1];
        Assert.Equal(137, failed.ExitCode); // SIGKILL
        Assert.StartsWith("did not register within 0.5 s and was killed", failed.Reason, StringComparison.Ordinal);
        Assert.False(Directory.Exists($"/proc/{spawned.Pid}"), $"the sleep process {spawned.Pid} still exists");
    }

    [Fact]
    public async Task With_enable_auto_restart_false_a_killed_collector_is_Failed_and_stays_down()
    {
        var env = SupervisedCollectorEndToEndTests.TestCollector("tc-norestart");
        env["DAEMONEYE_PROCESS_MANAGER__ENABLE_AUTO_RESTART"] = "false";
        await using var agent = await AgentProcess.StartAsync(env);
        var (client, events) = await SupervisedCollectorEndToEndTests.WatchAsync(agent);
        await using var _ = client;
        await using var lifecycle = await client.SubscribeAsync("control.collector.lifecycle");
        var running = await SupervisedCollectorEndToEndTests.WaitForAsync(events, agent, "tc-norestart", s => s.State == CollectorState.Running);

        using (var victim = Process.GetProcessById((int)running.Pid))
        {
            victim.Kill();
        }

        // The first change after the kill is Failed (with auto restart it is Stopped, "restart 1 of 3 in 0.1 s").
        // Neither state occurs during start-up, whose events may still be arriving here.
        var changes = await ReadUntilAsync(lifecycle, e => e.State is "Failed" or "Stopped");
        var failed = changes[^1];
        Assert.Equal("Failed", failed.State);
        Assert.Equal("was killed by signal 9; process_manager.enable_auto_restart is off", failed.Reason);
        Assert.Equal(0u, failed.RestartCount);

        // Stays down: no restart within ten times the 0.1 s backoff.
        using (var quiet = new CancellationTokenSource(TimeSpan.FromSeconds(1)))
        {
            var later = new List<LifecycleEvent>();
            try
            {
                await foreach (var message in lifecycle.ReadAllAsync(quiet.Token))
                {
                    later.Add(LifecycleEvent.Parser.ParseFrom(message.Payload.Span));
                }
            }
            catch (OperationCanceledException)
            {
            }

            Assert.Empty(later);
        }

        var status = await IpcProbe.CollectorAsync(agent.IpcSocketPath, "tc-norestart");
        Assert.Equal((CollectorState.Failed, 0u, 0u), (status.State, status.Pid, status.Restarts));
        Assert.DoesNotContain("restart 1 of", agent.Log, StringComparison.Ordinal);
    }

    /// <summary>The fake-clock version, with the window's edges: RestartPolicyTests in DaemonEye.Server.Tests.</summary>
    [Fact]
    public async Task Crashes_spaced_wider_than_restart_window_seconds_never_reach_Failed()
    {
        var env = SupervisedCollectorEndToEndTests.TestCollector("tc-spaced");
        env["DAEMONEYE_PROCESS_MANAGER__MAX_RESTART_ATTEMPTS"] = "1";
        env["DAEMONEYE_PROCESS_MANAGER__RESTART_WINDOW_SECONDS"] = "1";
        env["DAEMONEYE_PROCESS_MANAGER__HEARTBEAT_INTERVAL_SECONDS"] = "0.25";
        await using var agent = await AgentProcess.StartAsync(env);
        var (client, events) = await SupervisedCollectorEndToEndTests.WatchAsync(agent);
        await using var _ = client;
        var running = await SupervisedCollectorEndToEndTests.WaitForAsync(events, agent, "tc-spaced", s => s.State == CollectorState.Running);

        // Two crashes more than the 1 s window apart (the wait is paced by heartbeats): each is restart
        // 1 of 1. Within the window the second would have made it Failed.
        var sinceCrash = Stopwatch.StartNew();
        for (var restarts = 1u; restarts <= 2; restarts++)
        {
            if (restarts > 1)
            {
                await SupervisedCollectorEndToEndTests.WaitForAsync(events, agent, "tc-spaced", s => sinceCrash.Elapsed > TimeSpan.FromSeconds(1.5));
            }

            var restarted = agent.WaitForLineAsync(l => l.Contains("was killed by signal 9; restart 1 of 1 in 0.1 s", StringComparison.Ordinal));
            using (var victim = Process.GetProcessById((int)running.Pid))
            {
                victim.Kill();
            }

            sinceCrash.Restart();
            await restarted.WaitAsync(Patience);
            var previous = running.Pid;
            running = await SupervisedCollectorEndToEndTests.WaitForAsync(events, agent, "tc-spaced", s => s.State == CollectorState.Running && s.Pid != previous);
            Assert.Equal(restarts, running.Restarts);
        }

        Assert.DoesNotContain("not restarting it", agent.Log, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Supervised_collectors_get_a_HealthCheck_rpc_every_health_check_interval_seconds()
    {
        var env = SupervisedCollectorEndToEndTests.TestCollector("tc-checked");
        env["DAEMONEYE_PROCESS_MANAGER__HEARTBEAT_INTERVAL_SECONDS"] = "0.25";
        env["DAEMONEYE_PROCESS_MANAGER__HEALTH_CHECK_INTERVAL_SECONDS"] = "0.5";
        // A successful call's line is at debug.
        env["DAEMONEYE_LOGGING__LEVEL"] = "debug";
        await using var agent = await StartAgentAsync(env);

        // The router's "RPC ... completed" line for each check (rpc.enable_correlation_tracking is on by
        // default; at debug for a call that succeeded), timed by the agent's own log timestamp: when this test reads a line depends on
        // how busy the machine is.
        var seen = new List<TimeSpan>();
        var fourth = agent.WaitForLineAsync(l =>
        {
            if (!l.Contains(" HealthCheck <- tc-checked: Ok in ", StringComparison.Ordinal))
            {
                return false;
            }

            seen.Add(LogTimestamp(l));
            return seen.Count == 4;
        }, includeEarlier: false);

        // With the default (120 s) there would be no check at all in this time.
        await fourth.WaitAsync(TimeSpan.FromSeconds(20));
        // Four checks span three intervals of 0.5 s; checking on every 0.25 s tick would take 0.75 s.
        var span = seen[3] - seen[0];
        span = span < TimeSpan.Zero ? span + TimeSpan.FromDays(1) : span; // across midnight
        Assert.True(span >= TimeSpan.FromSeconds(1.2), $"4 checks in {span}");
    }

    /// <summary>The time of day at the start of an agent log line: <c>[HH:mm:ss.fff LVL] ...</c>.</summary>
    private static TimeSpan LogTimestamp(string line)
    {
        var match = System.Text.RegularExpressions.Regex.Match(line, @"\[(\d{2}:\d{2}:\d{2}\.\d{3}) ");
        Assert.True(match.Success, $"no [HH:mm:ss.fff timestamp in: {line}");
        return TimeSpan.ParseExact(match.Groups[1].Value, @"hh\:mm\:ss\.fff", System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public async Task A_call_that_sets_no_timeout_gets_Timeout_after_rpc_default_timeout_seconds()
    {
        var env = SupervisedCollectorEndToEndTests.TestCollector("tc-slow", "--health-delay-ms", "5000");
        env["DAEMONEYE_RPC__DEFAULT_TIMEOUT_SECONDS"] = "1";
        await using var agent = await AgentProcess.StartAsync(env);
        var (client, events) = await SupervisedCollectorEndToEndTests.WatchAsync(agent);
        await using var _ = client;
        await SupervisedCollectorEndToEndTests.WaitForAsync(events, agent, "tc-slow", s => s.State == CollectorState.Running);
        await using var caller = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = "caller-default-timeout", AutoReconnect = false });
        var reached = agent.WaitForLineAsync(l => l.Contains("[tc-slow] stdout: health-check started ", StringComparison.Ordinal));

        var clock = Stopwatch.StartNew();
        var response = await caller.CallAsync("tc-slow", RpcOperation.HealthCheck).WaitAsync(Patience);
        clock.Stop();

        Assert.Equal(RpcStatus.Error, response.Status);
        Assert.Equal(RpcErrorKind.Timeout, response.Error.Kind);
        // 1 s, not the default 30 s, and before the collector's answer at 5 s.
        Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(0.9), TimeSpan.FromSeconds(4));
        await reached.WaitAsync(Patience); // the call did reach the collector: the timeout is the agent's
    }

    [Fact]
    public async Task A_collectors_stdout_and_stderr_lines_appear_in_the_agents_log_tagged_with_its_id()
    {
        var text = Guid.NewGuid().ToString("N");
        await using var agent = await AgentProcess.StartAsync(SupervisedCollectorEndToEndTests.TestCollector("tc-chatty", "--say", text));

        var stdout = await agent.WaitForLineAsync(l => l.Contains($"said {text} on stdout", StringComparison.Ordinal), includeEarlier: true).WaitAsync(Patience);
        var stderr = await agent.WaitForLineAsync(l => l.Contains($"said {text} on stderr", StringComparison.Ordinal), includeEarlier: true).WaitAsync(Patience);

        Assert.EndsWith($"[tc-chatty] stdout: said {text} on stdout", stdout, StringComparison.Ordinal);
        Assert.EndsWith($"[tc-chatty] stderr: said {text} on stderr", stderr, StringComparison.Ordinal);
    }

    /// <summary>An agent whose single collector is Running.</summary>
    private static async Task<AgentProcess> StartAgentAsync(Dictionary<string, string> env)
    {
        var agent = await AgentProcess.StartAsync(env);
        try
        {
            var (client, events) = await SupervisedCollectorEndToEndTests.WatchAsync(agent);
            await using var _ = client;
            await SupervisedCollectorEndToEndTests.WaitForAsync(events, agent, env["DAEMONEYE_COLLECTORS__0__ID"], s => s.State == CollectorState.Running);
            return agent;
        }
        catch
        {
            await agent.DisposeAsync();
            throw;
        }
    }

    /// <summary>Lifecycle events from now until (and including) the first that <paramref name="last"/> accepts.</summary>
    private static async Task<List<LifecycleEvent>> ReadUntilAsync(BusSubscription lifecycle, Func<LifecycleEvent, bool> last)
    {
        var events = new List<LifecycleEvent>();
        using var timeout = new CancellationTokenSource(Patience);
        await foreach (var message in lifecycle.ReadAllAsync(timeout.Token))
        {
            var e = LifecycleEvent.Parser.ParseFrom(message.Payload.Span);
            events.Add(e);
            if (last(e))
            {
                return events;
            }
        }

        throw new TimeoutException($"no matching lifecycle event; saw {string.Join(", ", events.Select(e => e.State))}");
    }
}
