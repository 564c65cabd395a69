using System.Globalization;
using System.Text.Json;
using DaemonEye.Client;
using DaemonEye.Protocol.Collector.V1;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.Task.V1;
using DaemonEye.Protocol.V1;
using Google.Protobuf;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// Issue 22 item 5, control.health.diagnostics: <c>daemoneye-cli collectors diagnostics &lt;id&gt;</c>
/// against the real agent supervising the real procmond (the SDK's answer plus procmond's own
/// entries) and the example collector (the SDK's answer alone).
/// </summary>
public sealed class DiagnosticsEndToEndTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private static string ProcmondDll => Path.Combine(Path.GetDirectoryName(Paths.AgentDll)!, "collectors", "procmond", "procmond.dll");

    [Fact]
    public async Task Collectors_diagnostics_shows_the_sdk_entries_of_every_collector_and_procmonds_own_and_publishes_them()
    {
        await using var agent = await AgentProcess.StartAsync(new Dictionary<string, string>
        {
            ["DAEMONEYE_COLLECTORS__0__ID"] = "procmond",
            ["DAEMONEYE_COLLECTORS__0__EXECUTABLE"] = ProcmondDll,
            ["DAEMONEYE_COLLECTORS__0__ARGUMENTS__0"] = "--scan-interval-ms",
            ["DAEMONEYE_COLLECTORS__0__ARGUMENTS__1"] = "250",
            ["DAEMONEYE_COLLECTORS__1__ID"] = "example",
            ["DAEMONEYE_COLLECTORS__1__EXECUTABLE"] = Paths.ExampleCollectorDll,
        });
        var (client, events) = await SupervisedCollectorEndToEndTests.WatchAsync(agent);
        await using var watcher = client;
        var procmond = await SupervisedCollectorEndToEndTests.WaitForAsync(events, agent, "procmond", s => s.State == CollectorState.Running);
        var example = await SupervisedCollectorEndToEndTests.WaitForAsync(events, agent, "example", s => s.State == CollectorState.Running);
        await using var published = await client.SubscribeAsync("control.health.diagnostics.#");

        // procmond's baseline scan is done once it answers a snapshot task (publish=false: no events).
        var task = new TaskRequest { TaskId = "diag", TaskType = "process.snapshot" };
        task.Parameters["publish"] = "false";
        var snapshot = await client.CallAsync("procmond", RpcOperation.ExecuteTask, task.ToByteString(), Patience);
        Assert.True(snapshot.Status == RpcStatus.Ok, $"{snapshot.Error}");

        var (code, stdout, stderr) = await CliProcess.RunAsync(agent.SocketPath, Patience, "collectors", "diagnostics", "procmond", "--json");
        Assert.True(code == 0, $"exit {code}: {stderr}\n{agent.Log}");
        using (var json = JsonDocument.Parse(string.Join('\n', stdout)))
        {
            var d = json.RootElement;
            Assert.Equal("procmond", d.GetProperty("collector_id").GetString());
            Assert.Equal(procmond.Pid, d.GetProperty("pid").GetUInt32());
            Assert.True(d.GetProperty("uptime_ms").GetUInt64() > 0);
            // The SDK's entries.
            var versions = d.GetProperty("versions");
            Assert.Equal("1", versions.GetProperty("protocol").GetString());
            Assert.Equal(Environment.Version.ToString(), versions.GetProperty("dotnet").GetString());
            Assert.False(string.IsNullOrEmpty(versions.GetProperty("sdk").GetString()));
            Assert.False(string.IsNullOrEmpty(versions.GetProperty("collector").GetString()));
            Assert.True(d.GetProperty("counters").GetProperty("heartbeats_sent").GetUInt64() >= 1);
            Assert.Equal(0UL, d.GetProperty("counters").GetProperty("frames_lost").GetUInt64());
            // This very call is in flight while the answer is built.
            Assert.Equal(1UL, d.GetProperty("queue_depths").GetProperty("rpc_in_flight").GetUInt64());
            Assert.Equal("process.snapshot", d.GetProperty("settings").GetProperty("task_types").GetString());
            Assert.Equal("true", d.GetProperty("settings").GetProperty("supervised").GetString());
            Assert.Equal(agent.SocketPath, d.GetProperty("settings").GetProperty("socket_path").GetString());
            // procmond's own: its scan loop, its hash queue and the settings in effect.
            Assert.True(d.GetProperty("counters").GetProperty("scans").GetUInt64() >= 1);
            Assert.True(d.GetProperty("counters").GetProperty("processes_tracked").GetUInt64() > 0);
            Assert.True(d.GetProperty("queue_depths").TryGetProperty("hash_queue", out _));
            Assert.Equal(256UL, d.GetProperty("queue_depths").GetProperty("hash_queue_capacity").GetUInt64());
            Assert.Equal("250", d.GetProperty("settings").GetProperty("scan_interval_ms").GetString());
        }

        // The same answer went out on control.health.diagnostics.procmond, correlated with the call.
        var message = await NextAsync(published, "control.health.diagnostics.procmond", agent);
        var announced = Diagnostics.Parser.ParseFrom(message.Payload.Span);
        Assert.Equal("procmond", announced.CollectorId);
        Assert.Equal(procmond.Pid, announced.Pid);
        Assert.True(announced.Counters.ContainsKey("scans"));

        // A collector that adds nothing still answers: the SDK's entries alone.
        (code, stdout, stderr) = await CliProcess.RunAsync(agent.SocketPath, Patience, "collectors", "diagnostics", "example");
        Assert.True(code == 0, $"exit {code}: {stderr}");
        Assert.StartsWith($"example (pid {example.Pid.ToString(CultureInfo.InvariantCulture)}), up ", stdout[0], StringComparison.Ordinal);
        Assert.Equal(["versions:", "queue depths:", "counters:", "settings:"], stdout.Where(l => !l.StartsWith(' ') && l.EndsWith(':')));
        Assert.Contains(stdout, l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries) is ["heartbeats_sent", _]);
        Assert.DoesNotContain(stdout, l => l.Contains("scans", StringComparison.Ordinal));

        // An unknown collector: the agent's own error, exit 1.
        (code, _, stderr) = await CliProcess.RunAsync(agent.SocketPath, Patience, "collectors", "diagnostics", "nosuch");
        Assert.Equal(1, code);
        Assert.Contains("nosuch", stderr, StringComparison.Ordinal);
    }

    private static async Task<BusMessage> NextAsync(BusSubscription subscription, string topic, AgentProcess agent)
    {
        using var timeout = new CancellationTokenSource(Patience);
        await foreach (var message in subscription.ReadAllAsync(timeout.Token))
        {
            if (message.Topic == topic)
            {
                return message;
            }
        }

        throw new InvalidOperationException($"nothing on {topic}\n{agent.Log}");
    }
}
