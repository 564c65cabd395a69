using System.Globalization;
using System.Text.Json;
using DaemonEye.Client;
using DaemonEye.Protocol.Ipc.V1;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>daemoneye-cli's IPC commands (status, collectors ...) against a real agent supervising a real test-collector.</summary>
public sealed class CliCollectorEndToEndTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private static Dictionary<string, string> Configuration(string id) => new()
    {
        ["DAEMONEYE_COLLECTORS__0__ID"] = id,
        ["DAEMONEYE_COLLECTORS__0__EXECUTABLE"] = Paths.TestCollectorDll,
        ["DAEMONEYE_PROCESS_MANAGER__HEARTBEAT_INTERVAL_SECONDS"] = "0.2",
    };

    /// <summary>Checks the collector's status at each of its heartbeats until <paramref name="condition"/> holds.</summary>
    private static async Task<CollectorStatus> WaitForAsync(AgentProcess agent, string id, Func<CollectorStatus, bool> condition)
    {
        await using var watcher = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = "cli-test-watcher" });
        var heartbeats = await watcher.SubscribeAsync("control.#");
        using var timeout = new CancellationTokenSource(Patience);
        var status = await IpcProbe.CollectorAsync(agent.IpcSocketPath, id);
        while (!condition(status) && await heartbeats.Reader.WaitToReadAsync(timeout.Token))
        {
            while (heartbeats.Reader.TryRead(out _))
            {
            }

            status = await IpcProbe.CollectorAsync(agent.IpcSocketPath, id);
        }

        Assert.True(condition(status), $"collector {id}: unexpected status {status}\n{agent.Log}");
        return status;
    }

    private static Task<(int Code, IReadOnlyList<string> Stdout, string Stderr)> Cli(AgentProcess agent, params string[] args) =>
        CliProcess.RunAsync(agent.SocketPath, Patience, args);

    [Fact]
    public async Task Status_and_collectors_list_json_describe_the_supervised_collector()
    {
        await using var agent = await AgentProcess.StartAsync(Configuration("tc-cli"));
        var running = await WaitForAsync(agent, "tc-cli", s => s.State == CollectorState.Running && s.LastHeartbeatUnixNanos != 0);

        var (code, stdout, stderr) = await Cli(agent, "collectors", "list", "--json");
        Assert.True(code == 0, $"exit {code}: {stderr}");
        using (var json = JsonDocument.Parse(string.Join('\n', stdout)))
        {
            var collector = Assert.Single(json.RootElement.EnumerateArray());
            Assert.Equal("tc-cli", collector.GetProperty("id").GetString());
            Assert.Equal("Running", collector.GetProperty("state").GetString());
            Assert.Contains(collector.GetProperty("health").GetString(), new[] { "Healthy", "Degraded", "Unhealthy" });
            Assert.Equal(running.Pid, collector.GetProperty("pid").GetUInt32());
            Assert.Equal(0, collector.GetProperty("restarts").GetInt32());
            // What it declared in its Hello: the task types it executes, its capacity, its event domains.
            var capabilities = collector.GetProperty("capabilities").EnumerateArray().Select(c => c.GetString()).ToList();
            Assert.Contains("task:test.echo", capabilities);
            Assert.Contains("capacity:4", capabilities);
            Assert.Contains("publish:events.test.#", capabilities);
            var heartbeat = collector.GetProperty("last_heartbeat").GetString()!;
            Assert.EndsWith("Z", heartbeat, StringComparison.Ordinal);
            var parsed = DateTimeOffset.Parse(heartbeat, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal);
            Assert.Equal(TimeSpan.Zero, parsed.Offset);
            Assert.InRange(parsed, DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddMinutes(1));
        }

        (code, stdout, stderr) = await Cli(agent, "status", "--json");
        Assert.True(code == 0, $"exit {code}: {stderr}");
        using (var json = JsonDocument.Parse(string.Join('\n', stdout)))
        {
            var root = json.RootElement;
            Assert.False(string.IsNullOrEmpty(root.GetProperty("agent_version").GetString()));
            Assert.Equal(agent.Pid, root.GetProperty("pid").GetInt32());
            Assert.Equal(agent.SocketPath, root.GetProperty("bus_socket").GetString());
            Assert.Equal(agent.IpcSocketPath, root.GetProperty("ipc_socket").GetString());
            Assert.True(root.GetProperty("broker").GetProperty("connections_open").GetInt64() >= 1);
            Assert.Equal(0, root.GetProperty("rpc").GetProperty("pending").GetInt32());
            Assert.Equal("tc-cli", Assert.Single(root.GetProperty("collectors").EnumerateArray()).GetProperty("id").GetString());
        }

        (code, stdout, stderr) = await Cli(agent, "status");
        Assert.True(code == 0, $"exit {code}: {stderr}");
        var text = string.Join('\n', stdout);
        Assert.Contains("daemoneye-agent ", text, StringComparison.Ordinal);
        Assert.Contains(agent.SocketPath, text, StringComparison.Ordinal);
        Assert.Contains("rpc: requests", text, StringComparison.Ordinal);
        Assert.Contains("tc-cli", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Collectors_list_prints_a_table_and_collectors_restart_gives_a_new_pid_and_Running()
    {
        await using var agent = await AgentProcess.StartAsync(Configuration("tc-table"));
        var first = await WaitForAsync(agent, "tc-table", s => s.State == CollectorState.Running && s.LastHeartbeatUnixNanos != 0);

        var (code, stdout, stderr) = await Cli(agent, "collectors", "list");
        Assert.True(code == 0, $"exit {code}: {stderr}");
        Assert.Equal(new[] { "ID", "STATE", "HEALTH", "PID", "RESTARTS", "LAST", "HEARTBEAT", "REASON" }, Columns(stdout[0]));
        var row = Columns(Assert.Single(stdout, l => l.StartsWith("tc-table ", StringComparison.Ordinal)));
        Assert.Equal("Running", row[1]);
        Assert.Contains(row[2], new[] { "Healthy", "Degraded", "Unhealthy" });
        Assert.Equal(first.Pid.ToString(CultureInfo.InvariantCulture), row[3]);
        Assert.Equal("0", row[4]);

        (code, stdout, stderr) = await Cli(agent, "collectors", "restart", "tc-table");
        Assert.True(code == 0, $"exit {code}: {stderr}");
        var restarted = await IpcProbe.CollectorAsync(agent.IpcSocketPath, "tc-table");
        Assert.Equal(CollectorState.Running, restarted.State);
        Assert.NotEqual(0u, restarted.Pid);
        Assert.NotEqual(first.Pid, restarted.Pid);
        Assert.Equal($"collector 'tc-table' is running (pid {restarted.Pid})", stdout[0]);
        row = Columns(Assert.Single(stdout, l => l.StartsWith("tc-table ", StringComparison.Ordinal)));
        Assert.Equal(("Running", restarted.Pid.ToString(CultureInfo.InvariantCulture)), (row[1], row[3]));
        Assert.False(Directory.Exists($"/proc/{first.Pid}"), $"the first process {first.Pid} still exists");
    }

    private static string[] Columns(string line) => line.Split(' ', StringSplitOptions.RemoveEmptyEntries);

    [Fact]
    public async Task Collector_commands_report_health_stop_start_and_errors_with_their_exit_codes()
    {
        await using var agent = await AgentProcess.StartAsync(Configuration("tc-ctl"));
        await WaitForAsync(agent, "tc-ctl", s => s.State == CollectorState.Running);

        var (code, stdout, stderr) = await Cli(agent, "collectors", "health", "tc-ctl");
        Assert.True(code == 0, $"exit {code}: {stderr}");
        Assert.Contains("tc-ctl: healthy", string.Join('\n', stdout), StringComparison.Ordinal);

        (code, _, stderr) = await Cli(agent, "collectors", "health", "nobody");
        Assert.Equal(1, code);
        Assert.StartsWith("NotFound: ", stderr, StringComparison.Ordinal);
        Assert.Contains("tc-ctl", stderr, StringComparison.Ordinal);

        (code, _, stderr) = await Cli(agent, "collectors", "stop", "tc-ctl", "--timeout", "-1");
        Assert.Equal(2, code);
        Assert.Contains("--timeout", stderr, StringComparison.Ordinal);

        (code, stdout, stderr) = await Cli(agent, "collectors", "stop", "tc-ctl", "--json");
        Assert.True(code == 0, $"exit {code}: {stderr}");
        Assert.Equal(CollectorState.Stopped, (await IpcProbe.CollectorAsync(agent.IpcSocketPath, "tc-ctl")).State);
        DaemonEye.Client.Tests.SchemaAssert.Valid("collectors-action", string.Join('\n', stdout));
        Assert.Contains("\"action\": \"stop\"", string.Join('\n', stdout), StringComparison.Ordinal);

        (code, stdout, stderr) = await Cli(agent, "collectors", "start", "tc-ctl", "--json");
        Assert.True(code == 0, $"exit {code}: {stderr}");
        DaemonEye.Client.Tests.SchemaAssert.Valid("collectors-action", string.Join('\n', stdout));
        await WaitForAsync(agent, "tc-ctl", s => s.State == CollectorState.Running);

        (code, stdout, stderr) = await Cli(agent, "collectors", "restart", "tc-ctl", "--json");
        Assert.True(code == 0, $"exit {code}: {stderr}");
        DaemonEye.Client.Tests.SchemaAssert.Valid("collectors-action", string.Join('\n', stdout));
        await WaitForAsync(agent, "tc-ctl", s => s.State == CollectorState.Running);

        (code, _, stderr) = await CliProcess.RunAsync("/tmp/de-e2e-none/bus.sock", Patience, "status");
        Assert.Equal(3, code);
        Assert.Contains("ipc.sock", stderr, StringComparison.Ordinal);
    }
}
