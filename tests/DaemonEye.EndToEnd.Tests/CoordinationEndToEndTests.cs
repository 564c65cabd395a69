using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using DaemonEye.Client;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.Task.V1;
using DaemonEye.Protocol.V1;
using Google.Protobuf.WellKnownTypes;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// Task distribution and aggregation against real collector processes (tests/TestCollector, run and
/// supervised by the real agent): even round-robin split, failover when an instance is killed or
/// stops sending heartbeats mid-run, capacity measured inside the collector, partial results naming
/// the collector that never answered, and the error when no instance exists.
/// </summary>
public sealed class CoordinationEndToEndTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    internal sealed record Collector(string Id, string Type, params string[] Arguments);

    internal static Dictionary<string, string> Config(params Collector[] collectors)
    {
        var env = new Dictionary<string, string>
        {
            ["DAEMONEYE_PROCESS_MANAGER__RESTART_BACKOFF_SECONDS"] = "0.1",
            ["DAEMONEYE_COORDINATION__RULES__INTERVAL_SECONDS"] = "0",
            // Each task a test runs at once holds its own IPC connection (100 at once, below).
            ["DAEMONEYE_IPC__MAX_CONNECTIONS"] = "200",
        };
        for (var i = 0; i < collectors.Length; i++)
        {
            env[$"DAEMONEYE_COLLECTORS__{i}__ID"] = collectors[i].Id;
            env[$"DAEMONEYE_COLLECTORS__{i}__TYPE"] = collectors[i].Type;
            env[$"DAEMONEYE_COLLECTORS__{i}__EXECUTABLE"] = Paths.TestCollectorDll;
            for (var j = 0; j < collectors[i].Arguments.Length; j++)
            {
                env[$"DAEMONEYE_COLLECTORS__{i}__ARGUMENTS__{j}"] = collectors[i].Arguments[j];
            }
        }

        return env;
    }

    /// <summary>Waits, driven by control.# events, until every named collector satisfies the condition.</summary>
    internal static async Task<Dictionary<string, CollectorStatus>> WaitForAsync(AgentProcess agent, BusSubscription events, Func<CollectorStatus, bool> condition, params string[] ids)
    {
        using var timeout = new CancellationTokenSource(Patience);
        await using var e = events.ReadAllAsync(timeout.Token).GetAsyncEnumerator(timeout.Token);
        while (true)
        {
            var response = await IpcProbe.SendAsync(agent.IpcSocketPath, new IpcRequest { ListCollectors = new ListCollectorsRequest() });
            var all = response.ListCollectors.Collectors.Where(c => ids.Contains(c.Id)).ToDictionary(c => c.Id);
            if (all.Count == ids.Length && all.Values.All(condition))
            {
                return all;
            }

            if (!await e.MoveNextAsync())
            {
                Assert.Fail($"collectors {string.Join(", ", ids)} did not reach the expected state: {string.Join("; ", all.Values)}\n{agent.Log}");
            }
        }
    }

    internal static async Task<(BusClient Client, BusSubscription Events)> WatchAsync(AgentProcess agent)
    {
        var client = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = "coordination-watcher" });
        return (client, await client.SubscribeAsync("control.#"));
    }

    private static Task<IpcResponse> RunTaskAsync(AgentProcess agent, string type, uint timeoutMs = 0, params (string Key, string Value)[] parameters)
    {
        var request = new TaskRunRequest { TaskType = type, TimeoutMs = timeoutMs };
        foreach (var (key, value) in parameters)
        {
            request.Parameters[key] = value;
        }

        return IpcProbe.SendAsync(agent.IpcSocketPath, new IpcRequest { TaskRun = request });
    }

    private static Struct Outcome(TaskResult result)
    {
        Assert.Equal("google.protobuf.Struct", result.PayloadType);
        return Struct.Parser.ParseFrom(result.Payload);
    }

    private static AggregatedTaskResult Complete(IpcResponse response, string log)
    {
        Assert.True(response.Error is null, $"task failed: {response.Error}\n{log}");
        var result = response.TaskRun;
        Assert.False(result.Partial, $"partial: {result}");
        return result;
    }

    [Fact]
    public async Task Two_instances_of_one_type_share_100_tasks_evenly()
    {
        // Capacity does not bind here, so the split is the round-robin's alone. (A full instance is
        // skipped rather than waited for, so under a binding capacity the shares follow each
        // instance's speed; the capacity test covers that case.)
        await using var agent = await AgentProcess.StartAsync(Config(
            new Collector("tc-even-1", "tc", "--task-delay-ms", "10", "--capacity", "100"),
            new Collector("tc-even-2", "tc", "--task-delay-ms", "10", "--capacity", "100")));
        var (client, events) = await WatchAsync(agent);
        await using var _ = client;
        await WaitForAsync(agent, events, s => s.State == CollectorState.Running, "tc-even-1", "tc-even-2");

        var responses = await Task.WhenAll(Enumerable.Range(0, 100).Select(i => RunTaskAsync(agent, "test.echo", 0, ("n", i.ToString(CultureInfo.InvariantCulture)))));

        var results = responses.Select(r => Complete(r, agent.Log)).ToList();
        Assert.All(results, r => Assert.Equal(["tc"], r.ExpectedCollectorTypes));
        var single = results.Select(r => Assert.Single(r.Results)).ToList();
        var perInstance = single.GroupBy(r => r.CollectorId).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(["tc-even-1", "tc-even-2"], perInstance.Keys.Order());
        Assert.All(perInstance.Values, count => Assert.InRange(count, 45, 55));
        // Every task's own parameters came back: no result went to the wrong task.
        Assert.Equal(Enumerable.Range(0, 100).Select(i => i.ToString(CultureInfo.InvariantCulture)).Order(), single.Select(r => Outcome(r).Fields["param.n"].StringValue).Order());
    }

    [Fact]
    public async Task An_instance_killed_mid_run_loses_no_task_and_duplicates_none()
    {
        await using var agent = await AgentProcess.StartAsync(Config(
            new Collector("tc-kill-1", "tc", "--task-delay-ms", "150"),
            new Collector("tc-kill-2", "tc", "--task-delay-ms", "150")));
        var (client, events) = await WatchAsync(agent);
        await using var _ = client;
        var running = await WaitForAsync(agent, events, s => s.State == CollectorState.Running, "tc-kill-1", "tc-kill-2");

        var completed = 0;
        var twentyDone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        async Task<IpcResponse> Counted(int i)
        {
            var response = await RunTaskAsync(agent, "test.echo", 0, ("n", i.ToString(CultureInfo.InvariantCulture)));
            if (Interlocked.Increment(ref completed) == 20)
            {
                twentyDone.TrySetResult();
            }

            return response;
        }

        var all = Task.WhenAll(Enumerable.Range(0, 100).Select(Counted));
        await twentyDone.Task.WaitAsync(Patience);
        using (var victim = Process.GetProcessById((int)running["tc-kill-2"].Pid))
        {
            victim.Kill();
        }

        var responses = await all.WaitAsync(Patience);

        var results = responses.Select(r => Complete(r, agent.Log)).ToList();
        Assert.Equal(100, results.Select(r => r.TaskId).Distinct().Count());
        var single = results.Select(r => Assert.Single(r.Results)).ToList();
        Assert.All(single, r => Assert.Equal(r.TaskId, Outcome(r).Fields["task_id"].StringValue));
        Assert.Equal(Enumerable.Range(0, 100).Select(i => i.ToString(CultureInfo.InvariantCulture)).Order(), single.Select(r => Outcome(r).Fields["param.n"].StringValue).Order());
        // The kill hit tasks in flight on tc-kill-2 (4 slots busy with 150 ms tasks): they were re-sent.
        Assert.True(results.Sum(r => (int)r.Redistributions) >= 1, "no task was redistributed; the kill did not hit a task in flight\n" + agent.Log);
    }

    [Fact]
    public async Task A_capacity_of_2_is_never_exceeded_inside_the_collector()
    {
        await using var agent = await AgentProcess.StartAsync(Config(new Collector("tc-cap", "tc-cap", "--capacity", "2", "--task-delay-ms", "100")));
        var (client, events) = await WatchAsync(agent);
        await using var _ = client;
        await WaitForAsync(agent, events, s => s.State == CollectorState.Running, "tc-cap");

        var responses = await Task.WhenAll(Enumerable.Range(0, 20).Select(_ => RunTaskAsync(agent, "test.echo")));

        var outcomes = responses.Select(r => Outcome(Assert.Single(Complete(r, agent.Log).Results))).ToList();
        Assert.All(outcomes, o => Assert.InRange(o.Fields["in_flight"].NumberValue, 1, 2));
        // The limit was reached, so the assertion above could have failed.
        Assert.Equal(2, outcomes.Max(o => o.Fields["max_in_flight"].NumberValue));
    }

    [Fact]
    public async Task A_collector_that_never_answers_makes_the_result_partial_at_the_timeout_naming_it()
    {
        await using var agent = await AgentProcess.StartAsync(Config(
            new Collector("tc-answers", "answering", "--task-type", "test.echo", "--task-type", "test.warm-up"),
            new Collector("tc-silent", "silent", "--never-answer")));
        var (client, events) = await WatchAsync(agent);
        await using var _ = client;
        await WaitForAsync(agent, events, s => s.State == CollectorState.Running, "tc-answers", "tc-silent");
        // The first task a collector process runs pays for JIT (over a second on a busy machine); one
        // that only tc-answers executes takes that cost outside the timed task.
        Complete(await RunTaskAsync(agent, "test.warm-up"), agent.Log);

        var response = await RunTaskAsync(agent, "test.echo", 4000);

        Assert.Null(response.Error);
        var result = response.TaskRun;
        Assert.True(result.Partial && result.Results.Count == 1, $"{result}\n{agent.Log}");
        Assert.Equal(["answering", "silent"], result.ExpectedCollectorTypes);
        Assert.Equal("tc-answers", Assert.Single(result.Results).CollectorId);
        var missing = Assert.Single(result.Missing);
        Assert.Equal("silent", missing.CollectorType);
        Assert.Equal("tc-silent", missing.InstanceId);
        Assert.Contains("did not answer within 4 s", missing.Reason);
        Assert.True(result.DurationUs >= 4_000_000, $"completed after {result.DurationUs} µs, before the 4 s timeout");

        // The CLI prints the same: exit code 1 for a partial result, the missing collector named.
        var (code, stdout, stderr) = await CliProcess.RunAsync(agent.SocketPath, Patience, "task", "run", "test.echo", "--timeout", "3");
        Assert.True(code == 1, $"exit {code}: {string.Join('\n', stdout)} {stderr}");
        Assert.Contains(stdout, l => l.Contains("PARTIAL", StringComparison.Ordinal));
        Assert.Contains(stdout, l => l.Contains("missing silent (instance tc-silent)", StringComparison.Ordinal));
    }

    [Fact]
    public async Task An_instance_that_stops_sending_heartbeats_has_its_task_moved_to_another()
    {
        var env = Config(
            new Collector("tc-hb-1", "tc", "--capacity", "1", "--task-delay-ms", "300"),
            new Collector("tc-hb-2", "tc", "--capacity", "1", "--task-delay-ms", "300"));
        env["DAEMONEYE_PROCESS_MANAGER__HEARTBEAT_INTERVAL_SECONDS"] = "0.5";
        await using var agent = await AgentProcess.StartAsync(env);
        var (client, events) = await WatchAsync(agent);
        await using var _ = client;
        var running = await WaitForAsync(agent, events, s => s.State == CollectorState.Running && s.LastHeartbeatUnixNanos != 0, "tc-hb-1", "tc-hb-2");

        // Frozen before the tasks come: whichever task lands on tc-hb-1 can only finish elsewhere.
        var frozen = running["tc-hb-1"].Pid.ToString(CultureInfo.InvariantCulture);
        using (var stop = Process.Start("kill", ["-STOP", frozen]))
        {
            await stop.WaitForExitAsync();
        }

        try
        {
            var responses = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => RunTaskAsync(agent, "test.echo", 20_000)));
            var results = responses.Select(r => Complete(r, agent.Log)).ToList();
            Assert.All(results, r => Assert.Equal("tc-hb-2", Assert.Single(r.Results).CollectorId));
            Assert.True(results.Sum(r => (int)r.Redistributions) >= 1, agent.Log);
        }
        finally
        {
            using var cont = Process.Start("kill", ["-CONT", frozen]);
            await cont.WaitForExitAsync();
        }
    }

    [Fact]
    public async Task An_instance_failing_its_health_check_is_taken_out_of_rotation_and_its_tasks_complete_elsewhere()
    {
        // tc-sick keeps sending heartbeats but answers every HealthCheck unhealthy and never finishes a
        // task: a task that reaches it completes only if the failed health check moves it to tc-well.
        var env = Config(
            new Collector("tc-sick", "tc", "--never-answer", "--unhealthy"),
            new Collector("tc-well", "tc"));
        env["DAEMONEYE_PROCESS_MANAGER__HEARTBEAT_INTERVAL_SECONDS"] = "0.5";
        env["DAEMONEYE_PROCESS_MANAGER__HEALTH_CHECK_INTERVAL_SECONDS"] = "0.5";
        await using var agent = await AgentProcess.StartAsync(env);
        var (client, events) = await WatchAsync(agent);
        await using var _ = client;
        await WaitForAsync(agent, events, s => s.State == CollectorState.Running, "tc-sick", "tc-well");
        var checkFailed = agent.WaitForLineAsync(l => l.Contains("Collector tc-sick answered its health check unhealthy", StringComparison.Ordinal), includeEarlier: true);
        var moved = agent.WaitForLineAsync(l => l.Contains("Collector instance tc-sick failed its health check", StringComparison.Ordinal), includeEarlier: true);

        var responses = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => RunTaskAsync(agent, "test.echo", 20_000)));

        // Whether a task reached tc-sick before its first failed check is the scheduler's call: either it
        // was moved off (redistributed, logged as moved) or tc-sick was out of rotation before any came.
        var results = responses.Select(r => Complete(r, agent.Log)).ToList();
        Assert.All(results, r => Assert.Equal("tc-well", Assert.Single(r.Results).CollectorId));
        Assert.Contains("unhealthy on purpose", await checkFailed.WaitAsync(Patience));
        if (results.Sum(r => (int)r.Redistributions) > 0)
        {
            Assert.Contains("unhealthy on purpose", await moved.WaitAsync(Patience));
        }
    }

    [Fact]
    public async Task Task_run_shows_each_collector_answer_as_it_arrives_while_it_waits_for_the_others()
    {
        await using var agent = await AgentProcess.StartAsync(Config(new Collector("tc-quick", "tca"), new Collector("tc-mute", "tcb", "--never-answer")));
        var (client, events) = await WatchAsync(agent);
        await using var _ = client;
        await WaitForAsync(agent, events, s => s.State == CollectorState.Running, "tc-quick", "tc-mute");

        // tc-mute never answers and the task waits 600 s for it: what the CLI prints meanwhile (piped:
        // stderr lines, from the task's events on control.collector.task) is progress, not the answer.
        using (var waiting = new CliProcess(agent.SocketPath, "tc-quick (tca) answered after", "task", "run", "test.echo", "--timeout", "600"))
        {
            await waiting.Marker.WaitAsync(Patience);
            Assert.False(waiting.HasExited, "task run ended although tc-mute has not answered");
            Assert.Contains("assigned to tc-mute (tcb)", waiting.Stderr, StringComparison.Ordinal);
            Assert.Matches(@"task test\.echo [0-9a-f]+: tc-quick \(tca\) answered after [0-9.]+ ms: google\.protobuf\.Struct, [0-9]+ bytes", waiting.Stderr);
            Assert.Empty(waiting.Stdout);
        }

        // At its timeout the partial result comes; the answer it has was shown before it.
        var (code, stdout, stderr) = await CliProcess.RunAsync(agent.SocketPath, Patience, "task", "run", "test.echo", "--timeout", "2");
        Assert.True(code == 1, $"exit {code}: {string.Join('\n', stdout)} {stderr}");
        Assert.Contains("tc-quick (tca) answered after", stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("tc-mute (tcb) answered", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Bench_tasks_over_four_instances_and_task_run_json_print_what_the_agent_did()
    {
        await using var agent = await AgentProcess.StartAsync(Config(
            new Collector("tc-bench-1", "tc"), new Collector("tc-bench-2", "tc"), new Collector("tc-bench-3", "tc"), new Collector("tc-bench-4", "tc")));
        var (client, events) = await WatchAsync(agent);
        await using var _ = client;
        string[] instances = ["tc-bench-1", "tc-bench-2", "tc-bench-3", "tc-bench-4"];
        await WaitForAsync(agent, events, s => s.State == CollectorState.Running, instances);

        // The real CLI's benchmark, small: every task answered and aggregated, spread over the four.
        var (code, stdout, stderr) = await CliProcess.RunAsync(agent.SocketPath, Patience,
            "bench", "tasks", "--type", "test.echo", "--concurrency", "8", "--count", "200", "--warmup", "20", "--json");
        Assert.True(code == 0, $"exit {code}: {string.Join('\n', stdout)} {stderr}\n{agent.Log}");
        using (var bench = JsonDocument.Parse(string.Join('\n', stdout)))
        {
            var root = bench.RootElement;
            Assert.Equal("test.echo", root.GetProperty("task_type").GetString());
            Assert.Equal(8, root.GetProperty("concurrency").GetInt32());
            Assert.Equal(200, root.GetProperty("tasks").GetInt64());
            Assert.Equal(200, root.GetProperty("ok").GetInt64());
            Assert.True(root.GetProperty("tasks_per_sec").GetDouble() > 0);
            var latency = root.GetProperty("latency_us");
            Assert.InRange(latency.GetProperty("p50").GetDouble(), 1, latency.GetProperty("p99").GetDouble());
            Assert.Empty(root.GetProperty("errors").EnumerateObject());
            var byInstance = root.GetProperty("results_by_instance").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetInt64());
            Assert.Equal(instances, byInstance.Keys.Order());
            Assert.Equal(200, byInstance.Values.Sum());
        }

        // task run --json: the aggregated result with the Struct payload decoded.
        (code, stdout, stderr) = await CliProcess.RunAsync(agent.SocketPath, Patience, "task", "run", "test.echo", "--param", "n=7", "--json");
        Assert.True(code == 0, $"exit {code}: {string.Join('\n', stdout)} {stderr}");
        using var json = JsonDocument.Parse(string.Join('\n', stdout));
        var result = json.RootElement;
        Assert.Equal("test.echo", result.GetProperty("task_type").GetString());
        Assert.Equal(["tc"], result.GetProperty("expected_collector_types").EnumerateArray().Select(t => t.GetString()));
        Assert.False(result.TryGetProperty("partial", out var partial) && partial.GetBoolean());
        var only = Assert.Single(result.GetProperty("results").EnumerateArray().ToList());
        Assert.Contains(only.GetProperty("collector_id").GetString(), instances);
        Assert.Equal("google.protobuf.Struct", only.GetProperty("payload_type").GetString());
        Assert.False(only.TryGetProperty("payload", out var raw), $"payload left beside payload_decoded: {raw}");
        var decoded = only.GetProperty("payload_decoded");
        Assert.Equal("7", decoded.GetProperty("param.n").GetString());
        Assert.Equal(result.GetProperty("task_id").GetString(), decoded.GetProperty("task_id").GetString());
        Assert.Equal(only.GetProperty("collector_id").GetString(), decoded.GetProperty("instance").GetString());
    }

    [Fact]
    public async Task With_no_instance_declaring_the_type_the_task_is_refused_at_once_naming_the_declared_types()
    {
        await using var agent = await AgentProcess.StartAsync(Config(new Collector("tc-other", "tc", "--task-type", "test.other")));
        var (client, events) = await WatchAsync(agent);
        await using var _ = client;
        await WaitForAsync(agent, events, s => s.State == CollectorState.Running, "tc-other");

        // The agent knows at once that nobody executes test.echo: it does not wait for the task's 60 s.
        var response = await RunTaskAsync(agent, "test.echo", 60_000);

        Assert.NotNull(response.Error);
        Assert.Equal(RpcErrorKind.NotFound, response.Error.Kind);
        Assert.Contains("no running collector declares task type 'test.echo', and none is starting; declared task types: test.other (tc-other)", response.Error.Message);
    }
}
