using System.Diagnostics;
using DaemonEye.Client;
using DaemonEye.Protocol.Collector.V1;
using DaemonEye.Protocol.Ipc.V1;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// The agent supervising real collector processes built on the SDK (tests/TestCollector): stop,
/// escalation to SIGKILL, restart after kill -9, health from heartbeats under SIGSTOP.
/// </summary>
public sealed class SupervisedCollectorEndToEndTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    internal static Dictionary<string, string> TestCollector(string id, params string[] arguments)
    {
        var env = new Dictionary<string, string>
        {
            ["DAEMONEYE_COLLECTORS__0__ID"] = id,
            ["DAEMONEYE_COLLECTORS__0__EXECUTABLE"] = Paths.TestCollectorDll,
            ["DAEMONEYE_PROCESS_MANAGER__RESTART_BACKOFF_SECONDS"] = "0.1",
        };
        for (var i = 0; i < arguments.Length; i++)
        {
            env[$"DAEMONEYE_COLLECTORS__0__ARGUMENTS__{i}"] = arguments[i];
        }

        return env;
    }

    /// <summary>Waits, driven by the lifecycle and health topics, until the collector's status satisfies <paramref name="condition"/>.</summary>
    internal static async Task<CollectorStatus> WaitForAsync(BusSubscription events, AgentProcess agent, string id, Func<CollectorStatus, bool> condition)
    {
        var status = await IpcProbe.CollectorAsync(agent.IpcSocketPath, id);
        using var timeout = new CancellationTokenSource(Patience);
        await using var e = events.ReadAllAsync(timeout.Token).GetAsyncEnumerator(timeout.Token);
        while (!condition(status))
        {
            if (!await e.MoveNextAsync())
            {
                break;
            }

            status = await IpcProbe.CollectorAsync(agent.IpcSocketPath, id);
        }

        Assert.True(condition(status), $"collector {id}: unexpected status {status}\n{agent.Log}");
        return status;
    }

    internal static async Task<(BusClient Client, BusSubscription Events)> WatchAsync(AgentProcess agent)
    {
        var client = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = "supervision-watcher" });
        var events = await client.SubscribeAsync("control.#");
        return (client, events);
    }

    [Fact]
    public async Task Graceful_stop_ends_with_the_collectors_own_clean_exit()
    {
        await using var agent = await AgentProcess.StartAsync(TestCollector("tc-graceful"));
        var (client, events) = await WatchAsync(agent);
        await using var _ = client;
        await WaitForAsync(events, agent, "tc-graceful", s => s.State == CollectorState.Running);

        var response = await IpcProbe.CommandAsync(agent.IpcSocketPath, "tc-graceful", CollectorAction.Stop);

        Assert.Null(response.Error);
        Assert.Contains("exited on request", response.CollectorCommand.Message);
        Assert.Contains("exit code 0", response.CollectorCommand.Message);
        Assert.Equal(CollectorState.Stopped, response.CollectorCommand.Collector.State);
        Assert.Equal(0u, response.CollectorCommand.Collector.Restarts);
    }

    [Fact]
    public async Task A_collector_that_ignores_Stop_and_SIGTERM_is_SIGKILLed_within_the_configured_times()
    {
        var env = TestCollector("tc-stubborn", "--ignore-stop");
        env["DAEMONEYE_PROCESS_MANAGER__GRACEFUL_SHUTDOWN_TIMEOUT_SECONDS"] = "0.5";
        env["DAEMONEYE_PROCESS_MANAGER__FORCE_SHUTDOWN_TIMEOUT_SECONDS"] = "0.5";
        await using var agent = await AgentProcess.StartAsync(env);
        var (client, events) = await WatchAsync(agent);
        await using var _ = client;
        await WaitForAsync(events, agent, "tc-stubborn", s => s.State == CollectorState.Running);

        var clock = Stopwatch.StartNew();
        var response = await IpcProbe.CommandAsync(agent.IpcSocketPath, "tc-stubborn", CollectorAction.Stop);
        clock.Stop();

        Assert.Null(response.Error);
        Assert.Contains("killed with SIGKILL after the force timeout", response.CollectorCommand.Message);
        Assert.Contains("exit code 137", response.CollectorCommand.Message);
        // 0.5 s for the Stop RPC's grace, 0.5 s after SIGTERM: the kill comes after both, and soon after.
        Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(15));
        Assert.Contains("sending SIGTERM", agent.Log);
        Assert.Contains("sending SIGKILL", agent.Log);
    }

    [Fact]
    public async Task Kill_minus_9_of_a_collector_restarts_it_after_the_backoff_with_restart_count_1_and_a_new_pid()
    {
        await using var agent = await AgentProcess.StartAsync(TestCollector("tc-crashy"));
        var (client, events) = await WatchAsync(agent);
        await using var _ = client;
        var first = await WaitForAsync(events, agent, "tc-crashy", s => s.State == CollectorState.Running);

        using (var victim = Process.GetProcessById((int)first.Pid))
        {
            victim.Kill();
        }

        var second = await WaitForAsync(events, agent, "tc-crashy", s => s.State == CollectorState.Running && s.Pid != first.Pid);
        Assert.Equal(1u, second.Restarts);
        Assert.NotEqual(first.Pid, second.Pid);
        Assert.Contains("was killed by signal 9; restart 1 of 3 in 0.1 s", agent.Log);
    }

    [Fact]
    public async Task A_SIGSTOPped_collector_turns_Degraded_then_Unhealthy()
    {
        var env = TestCollector("tc-frozen");
        // Degraded lasts from 1 to 3 s of silence: wide enough that a late timer tick cannot skip it.
        env["DAEMONEYE_PROCESS_MANAGER__HEARTBEAT_INTERVAL_SECONDS"] = "1";
        await using var agent = await AgentProcess.StartAsync(env);
        var (client, events) = await WatchAsync(agent);
        await using var _ = client;
        var running = await WaitForAsync(events, agent, "tc-frozen", s => s.State == CollectorState.Running && s.LastHeartbeatUnixNanos != 0);
        Assert.Equal(CollectorHealth.Healthy, running.Health);

        using var stop = Process.Start("kill", ["-STOP", running.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        await stop.WaitForExitAsync();
        try
        {
            var degraded = await WaitForAsync(events, agent, "tc-frozen", s => s.Health != CollectorHealth.Healthy);
            Assert.Equal(CollectorHealth.Degraded, degraded.Health);
            var unhealthy = await WaitForAsync(events, agent, "tc-frozen", s => s.Health == CollectorHealth.Unhealthy);
            Assert.Equal(CollectorState.Running, unhealthy.State);
            Assert.Equal(running.Pid, unhealthy.Pid);
        }
        finally
        {
            using var cont = Process.Start("kill", ["-CONT", running.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
            await cont.WaitForExitAsync();
        }
    }
}
