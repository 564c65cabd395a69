using DaemonEye.Client;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.V1;
using static DaemonEye.EndToEnd.Tests.MetricsReader;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>The agent's RPC bookkeeping under limits and disconnects, against a slow real collector.</summary>
public sealed class RpcLimitsEndToEndTests
{
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(30);

    private static async Task<AgentProcess> StartWithSlowCollectorAsync(string id, params (string Key, string Value)[] settings)
    {
        var env = new Dictionary<string, string>
        {
            ["DAEMONEYE_COLLECTORS__0__ID"] = id,
            ["DAEMONEYE_COLLECTORS__0__EXECUTABLE"] = Paths.TestCollectorDll,
            ["DAEMONEYE_COLLECTORS__0__ARGUMENTS__0"] = "--health-delay-ms",
            ["DAEMONEYE_COLLECTORS__0__ARGUMENTS__1"] = "2000",
        };
        foreach (var (key, value) in settings)
        {
            env[key] = value;
        }

        var agent = await AgentProcess.StartAsync(env);
        await using var watcher = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = "lifecycle-watcher" });
        await using var lifecycle = await watcher.SubscribeAsync("control.collector.lifecycle");
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var status = await IpcProbe.CollectorAsync(agent.IpcSocketPath, id);
        await using var events = lifecycle.ReadAllAsync(timeout.Token).GetAsyncEnumerator(timeout.Token);
        while (status.State != CollectorState.Running && await events.MoveNextAsync())
        {
            status = await IpcProbe.CollectorAsync(agent.IpcSocketPath, id);
        }

        Assert.Equal(CollectorState.Running, status.State);
        return agent;
    }

    private static async Task<Protocol.Ipc.V1.RpcStatistics> RpcStatsAsync(AgentProcess agent) =>
        (await IpcProbe.SendAsync(agent.IpcSocketPath, new IpcRequest { Status = new StatusRequest() })).Status.Rpc;

    [Fact]
    public async Task Past_max_pending_requests_a_call_fails_at_once_with_ResourceExhausted_and_the_others_complete()
    {
        await using var agent = await StartWithSlowCollectorAsync("tc-busy", ("DAEMONEYE_RPC__MAX_PENDING_REQUESTS", "4"));
        await using var caller = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = "caller" });
        var rejectedBefore = (await RpcStatsAsync(agent)).Rejected;
        var exhaustedBefore = ValueOrZero(await SnapshotAsync(agent), "daemoneye.rpc.errors", ("rpc.operation", "health_check"), ("error.kind", "resource_exhausted"));

        var pending = Enumerable.Range(0, 4).Select(_ => caller.CallAsync("tc-busy", RpcOperation.HealthCheck, timeout: CallTimeout)).ToList();
        await caller.FlushAsync(); // Ping barrier: the agent has routed all four.
        Assert.Equal(4u, (await RpcStatsAsync(agent)).Pending);

        var refused = await caller.CallAsync("tc-busy", RpcOperation.HealthCheck, timeout: CallTimeout);

        Assert.Equal(RpcStatus.Error, refused.Status);
        Assert.Equal(RpcErrorKind.ResourceExhausted, refused.Error.Kind);
        Assert.Contains("rpc.max_pending_requests (4)", refused.Error.Message);
        // Counted: the router's rejected calls (status) and the errors metric by kind.
        Assert.Equal(rejectedBefore + 1, (await RpcStatsAsync(agent)).Rejected);
        Assert.Equal(exhaustedBefore + 1, ValueOrZero(await SnapshotAsync(agent), "daemoneye.rpc.errors", ("rpc.operation", "health_check"), ("error.kind", "resource_exhausted")));
        foreach (var response in await Task.WhenAll(pending))
        {
            Assert.Equal(RpcStatus.Ok, response.Status);
        }

        Assert.Equal(0u, (await RpcStatsAsync(agent)).Pending);
    }

    [Fact]
    public async Task A_caller_that_disconnects_mid_call_leaves_no_pending_entry_and_its_late_answer_is_discarded()
    {
        await using var agent = await StartWithSlowCollectorAsync("tc-slow");
        var before = await RpcStatsAsync(agent);

        var leaver = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = "leaver" });
        var abandoned = leaver.CallAsync("tc-slow", RpcOperation.HealthCheck, timeout: CallTimeout);
        await leaver.FlushAsync();
        await leaver.DisposeAsync();
        var lost = await abandoned;
        Assert.Equal(RpcErrorKind.CommunicationError, lost.Error.Kind);

        // A second call queued behind the first: when it is answered, the first answer has come and gone.
        await using var stayer = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = "stayer" });
        var answered = await stayer.CallAsync("tc-slow", RpcOperation.HealthCheck, timeout: CallTimeout);
        Assert.Equal(RpcStatus.Ok, answered.Status);

        var after = await RpcStatsAsync(agent);
        Assert.Equal(0u, after.Pending);
        Assert.True(after.LateResponsesDiscarded > before.LateResponsesDiscarded, $"late answers discarded: {before.LateResponsesDiscarded} -> {after.LateResponsesDiscarded}");
    }
}
