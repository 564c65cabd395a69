using System.Diagnostics;
using DaemonEye.Client;
using DaemonEye.Protocol.Collector.V1;
using DaemonEye.Protocol.Ipc.V1;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// Collector supervision with real child processes started by the real agent. These collectors
/// are plain programs (sh, sleep) that never register on the bus; SDK collectors are covered elsewhere.
/// </summary>
public sealed class SupervisionEndToEndTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    private static Dictionary<string, string> Collector(string id, string executable, bool enabled, params string[] arguments)
    {
        var env = new Dictionary<string, string>
        {
            ["DAEMONEYE_COLLECTORS__0__ID"] = id,
            ["DAEMONEYE_COLLECTORS__0__EXECUTABLE"] = executable,
            ["DAEMONEYE_COLLECTORS__0__ENABLED"] = enabled ? "true" : "false",
        };
        for (var i = 0; i < arguments.Length; i++)
        {
            env[$"DAEMONEYE_COLLECTORS__0__ARGUMENTS__{i}"] = arguments[i];
        }

        return env;
    }

    [Fact]
    public async Task A_collector_that_crashes_at_start_up_is_Failed_after_max_restart_attempts_and_says_so_on_the_lifecycle_topic()
    {
        var env = Collector("crasher", "/bin/sh", enabled: false, "-c", "exit 3");
        env["DAEMONEYE_PROCESS_MANAGER__MAX_RESTART_ATTEMPTS"] = "2";
        env["DAEMONEYE_PROCESS_MANAGER__RESTART_BACKOFF_SECONDS"] = "0.05";
        await using var agent = await AgentProcess.StartAsync(env);
        await using var client = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = "lifecycle-watcher" });
        await using var lifecycle = await client.SubscribeAsync("control.collector.lifecycle");

        var start = await IpcProbe.CommandAsync(agent.IpcSocketPath, "crasher", CollectorAction.Start);
        Assert.Null(start.Error);

        var events = new List<LifecycleEvent>();
        using var timeout = new CancellationTokenSource(Patience);
        await foreach (var message in lifecycle.ReadAllAsync(timeout.Token))
        {
            var e = LifecycleEvent.Parser.ParseFrom(message.Payload.Span);
            events.Add(e);
            if (e.State == "Failed")
            {
                break;
            }
        }

        // Three launches (the first and two restarts), each seen as Starting with a pid.
        Assert.Equal(3, events.Count(e => e.State == "Starting" && e.Pid != 0));
        var failed = events[^1];
        Assert.Equal("crasher", failed.CollectorId);
        Assert.Equal(2u, failed.RestartCount);
        Assert.Equal(3, failed.ExitCode);
        Assert.Contains("max_restart_attempts = 2", failed.Reason);
        Assert.Contains("not restarting", failed.Reason);

        var status = await IpcProbe.CollectorAsync(agent.IpcSocketPath, "crasher");
        Assert.Equal(CollectorState.Failed, status.State);
        Assert.Equal(2u, status.Restarts);
        Assert.Equal(0u, status.Pid);
    }

    [Fact]
    public async Task After_the_agent_is_killed_with_SIGKILL_no_collector_process_remains()
    {
        var env = Collector("sleeper", "/bin/sleep", enabled: true, "1000");
        env["DAEMONEYE_PROCESS_MANAGER__STARTUP_TIMEOUT_SECONDS"] = "600";
        await using var agent = await AgentProcess.StartAsync(env);

        // The agent starts it at once; it never registers, so it stays Starting with its pid.
        var status = await WaitForAsync(agent, "sleeper", s => s.Pid != 0);
        using var collector = Process.GetProcessById((int)status.Pid);
        Assert.Contains("sleep", collector.ProcessName, StringComparison.Ordinal);

        await agent.KillAgentOnlyAsync();

        using var timeout = new CancellationTokenSource(Patience);
        await collector.WaitForExitAsync(timeout.Token);
        Assert.False(File.Exists($"/proc/{status.Pid}/status") && !File.ReadAllText($"/proc/{status.Pid}/status").Contains("State:\tZ", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Commands_for_an_unknown_collector_say_NotFound_and_list_the_known_ids()
    {
        await using var agent = await AgentProcess.StartAsync(Collector("known-one", "/bin/sleep", enabled: false, "1"));

        var response = await IpcProbe.CommandAsync(agent.IpcSocketPath, "nope", CollectorAction.Stop);

        Assert.Equal(Protocol.V1.RpcErrorKind.NotFound, response.Error.Kind);
        Assert.Contains("known-one", response.Error.Message);
    }

    /// <summary>Lifecycle events drive the wait: every state change is published, so no polling interval is needed.</summary>
    private static async Task<CollectorStatus> WaitForAsync(AgentProcess agent, string id, Func<CollectorStatus, bool> condition)
    {
        await using var client = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = "status-waiter" });
        await using var lifecycle = await client.SubscribeAsync("control.collector.lifecycle");
        var status = await IpcProbe.CollectorAsync(agent.IpcSocketPath, id);
        if (condition(status))
        {
            return status;
        }

        using var timeout = new CancellationTokenSource(Patience);
        await foreach (var _ in lifecycle.ReadAllAsync(timeout.Token))
        {
            status = await IpcProbe.CollectorAsync(agent.IpcSocketPath, id);
            if (condition(status))
            {
                return status;
            }
        }

        throw new TimeoutException($"collector {id} never reached the expected state; last: {status}");
    }
}
