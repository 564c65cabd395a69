using DaemonEye.Client;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.V1;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// <c>daemoneye-cli health</c> against the real agent supervising real collectors: exit 0 when
/// healthy, 1 when degraded (a collector stopped heartbeating or answers HealthCheck more slowly than
/// health.probe_timeout_seconds; the error rate too high), 2 when unhealthy (a collector Failed),
/// 3 when the agent cannot be reached. (Buffers: MetricsEndToEndTests.)
/// </summary>
public sealed class HealthEndToEndTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private static Dictionary<string, string> Supervised(string id, params string[] arguments)
    {
        var env = new Dictionary<string, string>
        {
            ["DAEMONEYE_COLLECTORS__0__ID"] = id,
            ["DAEMONEYE_COLLECTORS__0__EXECUTABLE"] = Paths.TestCollectorDll,
            // A loaded test machine must not turn a healthy collector's HealthCheck into a timeout.
            ["DAEMONEYE_HEALTH__PROBE_TIMEOUT_SECONDS"] = "20",
        };
        for (var i = 0; i < arguments.Length; i++)
        {
            env[$"DAEMONEYE_COLLECTORS__0__ARGUMENTS__{i}"] = arguments[i];
        }

        return env;
    }

    /// <summary>Waits, woken by the agent's lifecycle and health topics, until the collector's status satisfies <paramref name="condition"/>.</summary>
    private static async Task<CollectorStatus> WaitForAsync(AgentProcess agent, string id, Func<CollectorStatus, bool> condition)
    {
        await using var client = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = "health-watcher", AutoReconnect = false });
        var events = await client.SubscribeAsync("control.#");
        var status = await IpcProbe.CollectorAsync(agent.IpcSocketPath, id);
        using var timeout = new CancellationTokenSource(Patience);
        await using var e = events.ReadAllAsync(timeout.Token).GetAsyncEnumerator(timeout.Token);
        while (!condition(status) && await e.MoveNextAsync())
        {
            status = await IpcProbe.CollectorAsync(agent.IpcSocketPath, id);
        }

        Assert.True(condition(status), $"collector {id}: unexpected status {status}\n{agent.Log}");
        return status;
    }

    private static async Task<(int Code, IReadOnlyList<string> Lines, string Stderr)> HealthAsync(AgentProcess agent, params string[] extra) =>
        await CliProcess.RunAsync(agent.SocketPath, Patience, ["health", .. extra]);

    private static string Line(IReadOnlyList<string> lines, string check) => Assert.Single(lines, l => l.StartsWith(check + " ", StringComparison.Ordinal));

    [Fact]
    public async Task A_running_heartbeating_collector_is_healthy_exit_0()
    {
        await using var agent = await AgentProcess.StartAsync(Supervised("tc-healthy"));
        await WaitForAsync(agent, "tc-healthy", s => s.State == CollectorState.Running && s.LastHeartbeatUnixNanos != 0);

        var (code, lines, stderr) = await HealthAsync(agent);

        Assert.True(code == 0, $"health exited {code}\n{string.Join('\n', lines)}\n{stderr}");
        Assert.Matches(@"^broker\s+healthy\s+accepting connections", Line(lines, "broker"));
        Assert.Matches(@"^rpc\s+healthy\s+1 collector\(s\) answered HealthCheck healthy", Line(lines, "rpc"));
        Assert.Matches(@"^heartbeats\s+healthy\s+1 running collector\(s\) heartbeating", Line(lines, "heartbeats"));
        Assert.Matches(@"^buffers\s+healthy", Line(lines, "buffers"));
        Assert.Matches(@"^error_rate\s+healthy\s+0 error\(s\)", Line(lines, "error_rate"));
        Assert.Equal("overall: healthy", lines[^1]);
    }

    [Fact]
    public async Task A_collector_that_stopped_heartbeating_makes_the_agent_degraded_exit_1()
    {
        var env = Supervised("tc-silent", "--no-heartbeat");
        env["DAEMONEYE_PROCESS_MANAGER__HEARTBEAT_INTERVAL_SECONDS"] = "1";
        await using var agent = await AgentProcess.StartAsync(env);
        await WaitForAsync(agent, "tc-silent", s => s.State == CollectorState.Running && s.Health is CollectorHealth.Degraded or CollectorHealth.Unhealthy);

        var (code, lines, stderr) = await HealthAsync(agent, "--json");

        Assert.True(code == 1, $"health exited {code}\n{string.Join('\n', lines)}\n{stderr}");
        using var json = System.Text.Json.JsonDocument.Parse(string.Join('\n', lines));
        Assert.Equal("degraded", json.RootElement.GetProperty("status").GetString());
        var checks = json.RootElement.GetProperty("checks").EnumerateArray().ToDictionary(c => c.GetProperty("name").GetString()!, c => c);
        Assert.Equal(["broker", "rpc", "heartbeats", "buffers", "error_rate", "durable_log", "rules"], checks.Keys);
        Assert.Equal("degraded", checks["heartbeats"].GetProperty("status").GetString());
        Assert.Contains("tc-silent", checks["heartbeats"].GetProperty("detail").GetString());
        // It still answers RPC: only the heartbeat check is down.
        Assert.Equal("healthy", checks["rpc"].GetProperty("status").GetString());
        Assert.Equal("healthy", checks["broker"].GetProperty("status").GetString());
    }

    /// <summary>health.probe_timeout_seconds: a collector that answers HealthCheck more slowly than it is "not responding".</summary>
    [Fact]
    public async Task A_collector_slower_than_probe_timeout_seconds_makes_rpc_degraded_exit_1()
    {
        var env = Supervised("tc-sluggish", "--health-delay-ms", "10000");
        env["DAEMONEYE_HEALTH__PROBE_TIMEOUT_SECONDS"] = "2.5";
        await using var agent = await AgentProcess.StartAsync(env);
        await WaitForAsync(agent, "tc-sluggish", s => s.State == CollectorState.Running && s.LastHeartbeatUnixNanos != 0);

        var (code, lines, stderr) = await HealthAsync(agent);

        Assert.True(code == 1, $"health exited {code}\n{string.Join('\n', lines)}\n{stderr}");
        Assert.Matches(@"^rpc\s+degraded\s+1 of 1 collector\(s\) did not answer HealthCheck healthy within 2\.5 s: tc-sluggish: Timeout ", Line(lines, "rpc"));
        Assert.Matches(@"^heartbeats\s+healthy", Line(lines, "heartbeats"));
        Assert.Matches(@"^broker\s+healthy", Line(lines, "broker"));
        Assert.Equal("overall: degraded", lines[^1]);
    }

    [Fact]
    public async Task A_Failed_collector_makes_the_agent_unhealthy_exit_2()
    {
        var env = Supervised("tc-broken", "--crash-at-start");
        env["DAEMONEYE_PROCESS_MANAGER__MAX_RESTART_ATTEMPTS"] = "0";
        await using var agent = await AgentProcess.StartAsync(env);
        await WaitForAsync(agent, "tc-broken", s => s.State == CollectorState.Failed);

        var (code, lines, stderr) = await HealthAsync(agent);

        Assert.True(code == 2, $"health exited {code}\n{string.Join('\n', lines)}\n{stderr}");
        Assert.Matches(@"^heartbeats\s+unhealthy\s+1 collector\(s\) Failed: tc-broken", Line(lines, "heartbeats"));
        Assert.Matches(@"^broker\s+healthy", Line(lines, "broker"));
        Assert.Equal("overall: unhealthy", lines[^1]);
    }

    [Fact]
    public async Task Errors_above_the_configured_rate_make_the_agent_degraded_exit_1()
    {
        // One error in a 60 s window is 0.017/s: above a threshold of 0.01/s.
        await using var agent = await AgentProcess.StartAsync(new Dictionary<string, string>
        {
            ["DAEMONEYE_HEALTH__MAX_ERROR_RATE_PER_SECOND"] = "0.01",
            ["DAEMONEYE_HEALTH__ERROR_RATE_WINDOW_SECONDS"] = "60",
        });
        await using (var caller = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = "health-caller", AutoReconnect = false }))
        {
            var refused = await caller.CallAsync("tc-nowhere", RpcOperation.HealthCheck).WaitAsync(Patience);
            Assert.Equal(RpcErrorKind.NotFound, refused.Error.Kind);
        }

        var (code, lines, stderr) = await HealthAsync(agent);

        Assert.True(code == 1, $"health exited {code}\n{string.Join('\n', lines)}\n{stderr}");
        Assert.Matches(@"^error_rate\s+degraded\s+1 error\(s\) in the last 60 s = 0\.017/s; threshold health\.max_error_rate_per_second 0\.01/s", Line(lines, "error_rate"));
    }

    [Fact]
    public async Task An_agent_that_cannot_be_reached_is_exit_3()
    {
        var directory = Directory.CreateTempSubdirectory("de-health-").FullName;
        try
        {
            var (code, _, stderr) = await CliProcess.RunAsync(Path.Combine(directory, "bus.sock"), Patience, "health");

            Assert.Equal(3, code);
            Assert.Contains("error:", stderr);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }
}
