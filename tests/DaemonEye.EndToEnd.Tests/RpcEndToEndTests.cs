using System.Text.Json;
using DaemonEye.Client;
using DaemonEye.Protocol.Collector.V1;
using DaemonEye.Protocol.Task.V1;
using DaemonEye.Protocol.V1;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>One agent and two real test-collector processes for the RPC tests: "fast" (answers at
/// once) and "slow" (answers HealthCheck after <see cref="SlowDelay"/>).</summary>
public sealed class RpcAgentFixture : IAsyncLifetime
{
    public static readonly TimeSpan SlowDelay = TimeSpan.FromMilliseconds(1500);

    internal AgentProcess Agent { get; private set; } = null!;

    internal TestCollectorProcess Fast { get; private set; } = null!;

    internal TestCollectorProcess Slow { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Agent = await AgentProcess.StartAsync(new Dictionary<string, string>(TestTokens.AgentSettings("fast", "slow", "doomed")) { ["DAEMONEYE_RPC__MAX_PENDING_REQUESTS"] = "5000" });
        Fast = await TestCollectorProcess.StartAsync(Agent.SocketPath, "fast");
        Slow = await TestCollectorProcess.StartAsync(Agent.SocketPath, "slow", "--health-delay-ms", ((int)SlowDelay.TotalMilliseconds).ToString(System.Globalization.CultureInfo.InvariantCulture));
    }

    public async Task DisposeAsync()
    {
        Fast?.Dispose();
        Slow?.Dispose();
        if (Agent is not null)
        {
            await Agent.DisposeAsync();
        }
    }
}

/// <summary>RPC through the real agent between SDK callers and real collector processes built on the SDK's collector host.</summary>
public sealed class RpcEndToEndTests(RpcAgentFixture fixture) : IClassFixture<RpcAgentFixture>
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    private BusClientOptions Options(string id) => new()
    {
        SocketPath = fixture.Agent.SocketPath,
        ClientId = id,
        AutoReconnect = false,
    };

    [Fact]
    public async Task HealthCheck_round_trip_carries_child_correlation_and_events_from_a_handler_share_the_root()
    {
        await using var caller = await BusClient.ConnectAsync(Options("caller-health"));
        var parent = new CorrelationMetadata { CorrelationId = "op-7", RootCorrelationId = "scan-1", SequenceNumber = 4, WorkflowStage = "triage", Tags = { ["case"] = "ir-42" } };

        var response = await caller.CallAsync("fast", RpcOperation.HealthCheck, parent: parent).WaitAsync(Patience);

        Assert.Equal(RpcStatus.Ok, response.Status);
        Assert.Equal("op-7", response.Correlation.ParentCorrelationId);
        Assert.Equal("scan-1", response.Correlation.RootCorrelationId);
        Assert.Equal(5UL, response.Correlation.SequenceNumber);
        Assert.Equal(32, response.Correlation.CorrelationId.Length);
        var health = HealthCheckResponse.Parser.ParseFrom(response.Payload);
        Assert.True(health.Healthy);
        Assert.Equal(fixture.Fast.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture), health.Details["pid"]);

        // A call without a parent starts a chain of its own.
        var root = await caller.CallAsync("fast", RpcOperation.GetCapabilities).WaitAsync(Patience);
        Assert.Equal(RpcStatus.Ok, root.Status);
        Assert.Equal(root.Correlation.CorrelationId, root.Correlation.RootCorrelationId);
        Assert.Equal(string.Empty, root.Correlation.ParentCorrelationId);
        var capabilities = Capabilities.Parser.ParseFrom(root.Payload);
        Assert.Equal(["test.echo"], capabilities.TaskTypes);
        Assert.Equal(["events.test.#"], capabilities.EventDomains);
        Assert.Equal(4U, capabilities.Capacity);

        // An event published by the handler while serving the call: parent = the call, same root.
        var events = await caller.SubscribeAsync("events.test.config");
        var update = new UpdateConfigRequest { Settings = { ["level"] = "debug" } };
        var updated = await caller.CallAsync("fast", RpcOperation.UpdateConfig, update.ToByteString(), parent: parent).WaitAsync(Patience);
        Assert.Equal(RpcStatus.Ok, updated.Status);
        await caller.FlushAsync().WaitAsync(Patience);
        var published = await events.Reader.ReadAsync().AsTask().WaitAsync(Patience);
        Assert.Equal(updated.Correlation.CorrelationId, published.Correlation.ParentCorrelationId);
        Assert.Equal("scan-1", published.Correlation.RootCorrelationId);
        Assert.Equal("triage", published.Correlation.WorkflowStage);
        Assert.Equal("ir-42", published.Correlation.Tags["case"]); // the caller's tags reach the handler's events
        Assert.Equal("debug", UpdateConfigRequest.Parser.ParseFrom(published.Payload.Span).Settings["level"]);

        // Start goes to the agent's process manager, which did not start this collector (issue 22).
        var start = await caller.CallAsync("fast", RpcOperation.Start).WaitAsync(Patience);
        Assert.Equal(RpcErrorKind.InvalidOperation, start.Error.Kind);
        Assert.Contains("collector 'fast' was not started by this agent", start.Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_call_to_an_unknown_collector_is_NotFound_and_lists_the_connected_ones()
    {
        await using var caller = await BusClient.ConnectAsync(Options("caller-notfound"));
        var response = await caller.CallAsync("nobody", RpcOperation.HealthCheck).WaitAsync(Patience);
        Assert.Equal(RpcStatus.Error, response.Status);
        Assert.Equal(RpcErrorKind.NotFound, response.Error.Kind);
        Assert.Contains("fast", response.Error.Message, StringComparison.Ordinal);
        Assert.Contains("slow", response.Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_call_that_outlives_its_timeout_gets_Timeout_and_the_late_answer_never_reaches_the_caller()
    {
        await using var caller = await BusClient.ConnectAsync(Options("caller-timeout"));
        var dropped = new List<RpcResponse>();
        caller.RpcResponseDropped += (_, r) =>
        {
            lock (dropped)
            {
                dropped.Add(r);
            }
        };
        var timedOut = await caller.CallAsync("slow", RpcOperation.HealthCheck, timeout: TimeSpan.FromMilliseconds(300)).WaitAsync(Patience);
        Assert.Equal(RpcStatus.Error, timedOut.Status);
        Assert.Equal(RpcErrorKind.Timeout, timedOut.Error.Kind);

        // A second call to the same collector is answered after the first (the collector answers in
        // start order over one connection, and the agent handles its frames in order): once it is
        // back, the first call's late answer has reached the agent, which discarded it.
        var later = await caller.CallAsync("slow", RpcOperation.HealthCheck, timeout: TimeSpan.FromSeconds(20)).WaitAsync(Patience);
        Assert.Equal(RpcStatus.Ok, later.Status);
        Assert.Equal("slow", HealthCheckResponse.Parser.ParseFrom(later.Payload).Status);
        Assert.Equal(0, caller.PendingCalls);

        // The caller may see the agent's own Timeout answer after its backstop fired, never the collector's.
        lock (dropped)
        {
            Assert.All(dropped, r => Assert.Equal(RpcErrorKind.Timeout, r.Error?.Kind));
            Assert.True(dropped.Count <= 1);
        }
    }

    [Fact]
    public async Task A_thousand_concurrent_calls_from_several_clients_are_each_answered_with_their_own_correlation()
    {
        const int Clients = 4;
        const int PerClient = 250;
        var callers = new List<BusClient>();
        try
        {
            for (var i = 0; i < Clients; i++)
            {
                callers.Add(await BusClient.ConnectAsync(Options($"caller-many-{i}")));
            }

            var calls = callers.SelectMany((c, i) => Enumerable.Range(0, PerClient).Select(j =>
            {
                var parent = new CorrelationMetadata { CorrelationId = $"p-{i}-{j}", RootCorrelationId = $"root-{i}" };
                return (Parent: parent, Call: c.CallAsync("fast", RpcOperation.HealthCheck, timeout: TimeSpan.FromSeconds(20), parent: parent));
            })).ToList();
            await Task.WhenAll(calls.Select(c => c.Call)).WaitAsync(TimeSpan.FromSeconds(60));

            foreach (var (parent, call) in calls)
            {
                var response = await call;
                Assert.True(response.Status == RpcStatus.Ok, $"{parent.CorrelationId}: {response.Error}");
                Assert.Equal(parent.CorrelationId, response.Correlation.ParentCorrelationId);
                Assert.Equal(parent.RootCorrelationId, response.Correlation.RootCorrelationId);
            }

            Assert.Equal(Clients * PerClient, calls.Select(c => c.Call.Result.Correlation.CorrelationId).Distinct().Count());
            Assert.All(callers, c => Assert.Equal(0, c.LateRpcResponses));
        }
        finally
        {
            foreach (var caller in callers)
            {
                await caller.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task Calls_larger_than_the_socket_buffers_arrive_whole_both_ways_among_small_ones()
    {
        // A 500 kB request and its echo do not fit a Unix socket's buffer (about 200 kB): every hop's
        // direct send puts only part of the frame on the socket and its writer sends the rest, while
        // small calls keep going through the same connections.
        await using var caller = await BusClient.ConnectAsync(Options("caller-large"));
        static string Blob(int i) => new((char)('a' + i), 500_000);
        static TaskRequest Request(int i) => new() { TaskId = $"large-{i}", TaskType = "test.echo", Parameters = { ["blob"] = Blob(i) } };

        // Alone first (the caller's direct path), then several at once with small calls among them.
        var first = await caller.CallAsync("fast", RpcOperation.ExecuteTask, Request(0).ToByteString(), TimeSpan.FromSeconds(20)).WaitAsync(Patience);
        var large = Enumerable.Range(1, 5).Select(i => caller.CallAsync("fast", RpcOperation.ExecuteTask, Request(i).ToByteString(), TimeSpan.FromSeconds(20))).ToList();
        var small = Enumerable.Range(0, 200).Select(_ => caller.CallAsync("fast", RpcOperation.HealthCheck, timeout: TimeSpan.FromSeconds(20))).ToList();
        await Task.WhenAll(large.Concat(small)).WaitAsync(TimeSpan.FromSeconds(60));

        foreach (var (response, i) in large.Select((t, i) => (t.Result, i + 1)).Prepend((first, 0)))
        {
            Assert.True(response.Status == RpcStatus.Ok, $"large call {i}: {response.Error}");
            var result = TaskResult.Parser.ParseFrom(response.Payload);
            Assert.Equal($"large-{i}", result.TaskId);
            var echoed = Struct.Parser.ParseFrom(result.Payload).Fields["param.blob"].StringValue;
            Assert.True(echoed == Blob(i), $"large call {i}: the echo differs ({echoed.Length} characters)");
        }

        Assert.All(small, t => Assert.Equal(RpcStatus.Ok, t.Result.Status));
        Assert.Equal(0, caller.LateRpcResponses);
    }

    [Fact]
    public async Task Killing_the_collector_mid_call_fails_the_pending_call_with_CommunicationError_at_once()
    {
        using var doomed = await TestCollectorProcess.StartAsync(fixture.Agent.SocketPath, "doomed", "--health-delay-ms", "60000");
        await using var caller = await BusClient.ConnectAsync(Options("caller-doomed"));
        var started = doomed.NextLineAsync("health-check started");
        var call = caller.CallAsync("doomed", RpcOperation.HealthCheck, timeout: TimeSpan.FromSeconds(50));
        await started.WaitAsync(Patience);

        await doomed.KillAsync();

        var response = await call.WaitAsync(Patience);
        Assert.Equal(RpcStatus.Error, response.Status);
        Assert.Equal(RpcErrorKind.CommunicationError, response.Error.Kind);
        Assert.Contains("doomed", response.Error.Message, StringComparison.Ordinal);

        var gone = await caller.CallAsync("doomed", RpcOperation.HealthCheck).WaitAsync(Patience);
        Assert.Equal(RpcErrorKind.NotFound, gone.Error.Kind);
    }

    [Fact]
    public async Task A_caller_that_disconnects_mid_call_leaves_the_agent_and_the_collector_working()
    {
        var leaving = await BusClient.ConnectAsync(Options("caller-leaving"));
        var started = fixture.Slow.NextLineAsync("health-check started");
        var abandoned = leaving.CallAsync("slow", RpcOperation.HealthCheck, timeout: TimeSpan.FromSeconds(20));
        await started.WaitAsync(Patience);
        await leaving.DisposeAsync();

        var local = await abandoned.WaitAsync(Patience);
        Assert.Equal(RpcErrorKind.CommunicationError, local.Error.Kind);

        // The collector answers the abandoned call later; the agent drops it and keeps serving.
        await using var next = await BusClient.ConnectAsync(Options("caller-next"));
        var fast = await next.CallAsync("fast", RpcOperation.HealthCheck).WaitAsync(Patience);
        Assert.Equal(RpcStatus.Ok, fast.Status);
        var slow = await next.CallAsync("slow", RpcOperation.HealthCheck, timeout: TimeSpan.FromSeconds(20)).WaitAsync(Patience);
        Assert.Equal(RpcStatus.Ok, slow.Status);
        Assert.Equal(0, next.LateRpcResponses);
        Assert.Equal(0, next.PendingCalls);
    }

    [Fact]
    public async Task A_second_collector_with_a_taken_id_is_refused_and_exits_with_1()
    {
        var (code, output) = await TestCollectorProcess.RunToExitAsync(fixture.Agent.SocketPath, "fast", Patience);
        Assert.True(code == 1, $"exit {code}:\n{output}");
        Assert.Contains("Conflict", output, StringComparison.Ordinal);
        Assert.Contains("already registered", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Bench_rpc_json_reports_throughput_latency_and_errors()
    {
        var (code, stdout, stderr) = await CliProcess.RunAsync(fixture.Agent.SocketPath, TimeSpan.FromSeconds(120),
            "bench", "rpc", "--collector", "fast", "--requests", "3000", "--concurrency", "16", "--connections", "2", "--warmup", "200", "--json");
        Assert.True(code == 0, $"exit {code}: {stderr}");
        using var json = JsonDocument.Parse(string.Join('\n', stdout));
        var root = json.RootElement;
        Assert.Equal(3000, root.GetProperty("requests").GetInt64());
        Assert.True(root.GetProperty("requests_per_sec").GetDouble() > 0);
        var latency = root.GetProperty("latency_us");
        Assert.True(latency.GetProperty("p50").GetDouble() > 0);
        Assert.True(latency.GetProperty("p99").GetDouble() >= latency.GetProperty("p50").GetDouble());
        Assert.True(latency.GetProperty("p999").GetDouble() >= latency.GetProperty("p99").GetDouble());
        Assert.Equal(JsonValueKind.Object, root.GetProperty("errors").ValueKind);
        Assert.Equal("reader", root.GetProperty("completions").GetString());
        Assert.Equal(200, root.GetProperty("busy_poll_us").GetInt32());

        // The SDK's default completions, for comparison.
        var (poolCode, poolOut, poolErr) = await CliProcess.RunAsync(fixture.Agent.SocketPath, TimeSpan.FromSeconds(120),
            "bench", "rpc", "--collector", "fast", "--requests", "1000", "--concurrency", "16", "--warmup", "0", "--completions", "thread-pool", "--busy-poll-us", "0", "--json");
        Assert.True(poolCode == 0, $"exit {poolCode}: {poolErr}");
        using var pool = JsonDocument.Parse(string.Join('\n', poolOut));
        Assert.Equal("thread-pool", pool.RootElement.GetProperty("completions").GetString());
        Assert.Equal(0, pool.RootElement.GetProperty("busy_poll_us").GetInt32());
        Assert.Equal(1000, pool.RootElement.GetProperty("ok").GetInt64());

        var (bad, _, badErr) = await CliProcess.RunAsync(fixture.Agent.SocketPath, Patience, "bench", "rpc", "--collector", "fast", "--completions", "inline");
        Assert.Equal(2, bad);
        Assert.Contains("'inline' not recognized", badErr, StringComparison.Ordinal);
        Assert.Contains("thread-pool", badErr, StringComparison.Ordinal);

        var (badPoll, _, badPollErr) = await CliProcess.RunAsync(fixture.Agent.SocketPath, Patience, "bench", "rpc", "--collector", "fast", "--busy-poll-us", "20000");
        Assert.Equal(2, badPoll);
        Assert.Contains("--busy-poll-us is 20000; it must be 0 (off) to 10000", badPollErr, StringComparison.Ordinal);

        var (missing, _, missingErr) = await CliProcess.RunAsync(fixture.Agent.SocketPath, Patience, "bench", "rpc", "--collector", "nobody", "--requests", "10");
        Assert.Equal(1, missing);
        Assert.StartsWith("NotFound: ", missingErr, StringComparison.Ordinal);
    }

    private async Task<double> InvalidPayloadsAsync(string operation) =>
        MetricsReader.ValueOrZero(await MetricsReader.SnapshotAsync(fixture.Agent), "daemoneye.rpc.invalid_payloads", ("rpc.operation", operation));

    private static double Executed(RpcResponse response) =>
        Struct.Parser.ParseFrom(TaskResult.Parser.ParseFrom(response.Payload).Payload).Fields["executed"].NumberValue;

    [Fact]
    public async Task Malformed_payloads_of_known_schemas_are_refused_by_the_agent_naming_the_problem_counted_and_never_forwarded()
    {
        await using var caller = await BusClient.ConnectAsync(Options("caller-payloads"));
        await using var config = await caller.SubscribeAsync("events.test.config");
        await caller.FlushAsync().WaitAsync(Patience);
        var valid = new TaskRequest { TaskId = "payload-ok-1", TaskType = "test.echo" };
        var before = await caller.CallAsync("fast", RpcOperation.ExecuteTask, valid.ToByteString(), TimeSpan.FromSeconds(20)).WaitAsync(Patience);
        Assert.Equal(RpcStatus.Ok, before.Status);
        var (tasksBefore, configsBefore) = (await InvalidPayloadsAsync("execute_task"), await InvalidPayloadsAsync("update_config"));
        var (stopsBefore, healthBefore) = (await InvalidPayloadsAsync("stop"), await InvalidPayloadsAsync("health_check"));

        async Task<string> RefusedAsync(RpcOperation operation, ByteString payload)
        {
            var response = await caller.CallAsync("fast", operation, payload, TimeSpan.FromSeconds(20)).WaitAsync(Patience);
            Assert.Equal(RpcStatus.Error, response.Status);
            Assert.Equal(RpcErrorKind.InvalidOperation, response.Error.Kind);
            return response.Error.Message;
        }

        // A task that the collector would run (its type is declared) but without a task id.
        Assert.Equal("ExecuteTask: TaskRequest.task_id has 0 characters; allowed: 1 to 256",
            await RefusedAsync(RpcOperation.ExecuteTask, new TaskRequest { TaskType = "test.echo" }.ToByteString()));
        // Bytes that are not a TaskRequest at all (a truncated length-delimited field).
        Assert.StartsWith("ExecuteTask payload is not a daemoneye.task.v1.TaskRequest: ",
            await RefusedAsync(RpcOperation.ExecuteTask, ByteString.CopyFrom(0x0A, 0x10, 0x41)));
        // Another message in its place: a StopRequest's bool where TaskRequest has a string.
        Assert.Equal("ExecuteTask payload has field 1 as a varint, but daemoneye.task.v1.TaskRequest.task_id is string; allowed: 1 task_id (string), 2 task_type (string), 3 parameters (map), 4 priority (int32)",
            await RefusedAsync(RpcOperation.ExecuteTask, new StopRequest { Graceful = true }.ToByteString()));
        Assert.Equal("UpdateConfig payload has field 9 (a varint), which daemoneye.collector.v1.UpdateConfigRequest does not have; allowed: 1 settings (map)",
            await RefusedAsync(RpcOperation.UpdateConfig, ByteString.CopyFrom(0x48, 0x01)));
        Assert.Equal("UpdateConfig: UpdateConfigRequest.settings has a key of 0 characters; allowed: 1 to 128 (no settings: read them)",
            await RefusedAsync(RpcOperation.UpdateConfig, new UpdateConfigRequest { Settings = { [string.Empty] = "1" } }.ToByteString()));
        Assert.StartsWith("Stop payload has field 2 (length-delimited), which daemoneye.collector.v1.StopRequest does not have; allowed: 1 graceful (bool)",
            await RefusedAsync(RpcOperation.Stop, new TaskRequest { TaskType = "x" }.ToByteString()));
        Assert.StartsWith("HealthCheck takes no payload; got 2 bytes",
            await RefusedAsync(RpcOperation.HealthCheck, ByteString.CopyFrom(0x08, 0x01)));

        // Counted by operation; nothing reached the collector: its next task is the next one it executes,
        // and the first UpdateConfig it publishes is the valid one that follows.
        Assert.Equal(tasksBefore + 3, await InvalidPayloadsAsync("execute_task"));
        Assert.Equal(configsBefore + 2, await InvalidPayloadsAsync("update_config"));
        Assert.Equal(stopsBefore + 1, await InvalidPayloadsAsync("stop"));
        Assert.Equal(healthBefore + 1, await InvalidPayloadsAsync("health_check"));
        var after = await caller.CallAsync("fast", RpcOperation.ExecuteTask, new TaskRequest { TaskId = "payload-ok-2", TaskType = "test.echo" }.ToByteString(), TimeSpan.FromSeconds(20)).WaitAsync(Patience);
        Assert.Equal(Executed(before) + 1, Executed(after));
        var update = await caller.CallAsync("fast", RpcOperation.UpdateConfig, new UpdateConfigRequest { Settings = { ["marker"] = "valid" } }.ToByteString(), TimeSpan.FromSeconds(20)).WaitAsync(Patience);
        Assert.Equal(RpcStatus.Ok, update.Status);
        using var timeout = new CancellationTokenSource(Patience);
        var published = UpdateConfigRequest.Parser.ParseFrom((await config.Reader.ReadAsync(timeout.Token)).Payload.Span);
        Assert.Equal("valid", published.Settings["marker"]);
        await fixture.Agent.WaitForLineAsync(l => l.Contains("ExecuteTask refused (InvalidOperation): ExecuteTask: TaskRequest.task_id has 0 characters", StringComparison.Ordinal), includeEarlier: true).WaitAsync(Patience);
    }

    [Fact]
    public async Task A_handler_that_fails_is_answered_ExecutionError_with_its_message_and_the_collector_serves_on()
    {
        await using var caller = await BusClient.ConnectAsync(Options("caller-failing"));
        var failing = new TaskRequest { TaskId = "fails-1", TaskType = "test.echo", Parameters = { ["fail"] = "disk on fire" } };
        var response = await caller.CallAsync("fast", RpcOperation.ExecuteTask, failing.ToByteString(), TimeSpan.FromSeconds(20)).WaitAsync(Patience);
        Assert.Equal(RpcStatus.Error, response.Status);
        Assert.Equal(RpcErrorKind.ExecutionError, response.Error.Kind);
        Assert.Equal("ExecuteTask failed in collector 'fast': disk on fire", response.Error.Message);

        var next = await caller.CallAsync("fast", RpcOperation.ExecuteTask, new TaskRequest { TaskId = "fails-2", TaskType = "test.echo" }.ToByteString(), TimeSpan.FromSeconds(20)).WaitAsync(Patience);
        Assert.Equal(RpcStatus.Ok, next.Status);
        var errors = MetricsReader.ValueOrZero(await MetricsReader.SnapshotAsync(fixture.Agent), "daemoneye.rpc.errors", ("rpc.operation", "execute_task"), ("error.kind", "execution_error"));
        Assert.True(errors >= 1, $"daemoneye.rpc.errors{{execute_task, execution_error}} = {errors}");
    }
}
