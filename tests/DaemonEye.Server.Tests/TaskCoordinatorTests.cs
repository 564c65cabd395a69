using System.Threading.Channels;
using DaemonEye.Configuration;
using DaemonEye.Coordination;
using DaemonEye.Gateway.Collectors;
using DaemonEye.Gateway.Rpc;
using DaemonEye.Protocol.Task.V1;
using DaemonEye.Protocol.V1;
using TaskRequest = DaemonEye.Protocol.Task.V1.TaskRequest;
using Google.Protobuf;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace DaemonEye.Server.Tests;

/// <summary>
/// The task coordinator over the real RPC router and agent RPC client, on a fake clock; collectors
/// are in-process router peers whose requests the test answers (or not) one by one.
/// </summary>
public sealed class TaskCoordinatorTests : IDisposable
{
    private static readonly TimeSpan Heartbeat = TimeSpan.FromSeconds(1);
    private static readonly DateTimeOffset Start = new(2026, 11, 25, 12, 0, 0, TimeSpan.Zero);
    private readonly FakeTimeProvider _time;
    private readonly CollectorDirectory _hub;
    private readonly RpcRouter _router;
    private readonly TaskCoordinator _coordinator;
    private long _nextConnection = 10;

    public TaskCoordinatorTests() : this(new CoordinationOptions())
    {
    }

    private TaskCoordinatorTests(CoordinationOptions options, FakeTimeProvider? time = null)
    {
        _time = time ?? new FakeTimeProvider(Start);
        _hub = new CollectorDirectory(_time, Heartbeat);
        var rpcOptions = Options.Create(new RpcOptions { DefaultTimeoutSeconds = 30, MaxPendingRequests = 1000 });
        _router = new RpcRouter(rpcOptions, _time, _hub, NullLogger<RpcRouter>.Instance);
        var collectors = new List<CollectorDefinition>
        {
            new() { Id = "p-1", Type = "procmond", Executable = "x" },
            new() { Id = "p-2", Type = "procmond", Executable = "x" },
        };
        _coordinator = new TaskCoordinator(Options.Create(options), Options.Create(new ProcessManagerOptions { HeartbeatIntervalSeconds = Heartbeat.TotalSeconds }),
            Options.Create(collectors), new AgentRpcClient(_router, _time, rpcOptions), _hub, _time, NullLogger<TaskCoordinator>.Instance);
    }

    public void Dispose()
    {
        _coordinator.Dispose();
        _router.Dispose();
        _hub.Dispose();
    }

    private Collector Connect(string id, int capacity, params string[] taskTypes)
    {
        var peer = new Collector(++_nextConnection, id, this);
        var capabilities = taskTypes.Select(t => "task:" + t).Append("capacity:" + capacity).ToList();
        Assert.True(_router.TryRegisterCollector(peer, new CollectorPresence(id, peer.Id, 1000, 0, capabilities), out var error), error);
        return peer;
    }

    private Task<AggregatedTaskResult> Run(string type = "scan", int priority = 0, double timeoutSeconds = 10) =>
        _coordinator.RunAsync(new TaskSpec(type, new Dictionary<string, string>(), priority, TimeSpan.FromSeconds(timeoutSeconds)), null, CancellationToken.None);

    [Fact]
    public async Task Instances_of_one_type_take_turns_and_a_full_instance_is_skipped_until_it_answers()
    {
        var p1 = Connect("p-1", 1, "scan");
        var p2 = Connect("p-2", 1, "scan");

        var first = Run();
        var second = Run();
        var third = Run();
        var toP1 = await p1.NextAsync();
        var toP2 = await p2.NextAsync();
        Assert.Equal(1, _coordinator.Statistics.Queued);

        p2.Answer(toP2, "b");
        var thirdAtP2 = await p2.NextAsync();
        Assert.Equal("p-2", Assert.Single((await second).Results).CollectorId);
        p1.Answer(toP1, "a");
        p2.Answer(thirdAtP2, "c");

        Assert.Equal("p-1", Assert.Single((await first).Results).CollectorId);
        var last = await third;
        Assert.Equal(["procmond"], last.ExpectedCollectorTypes);
        Assert.False(last.Partial);
        Assert.Equal(0, p1.Pending);
    }

    [Fact]
    public async Task Waiting_tasks_leave_the_queue_by_priority_then_arrival()
    {
        var p1 = Connect("p-1", 1, "scan");
        var busy = Run();
        var occupied = await p1.NextAsync();
        var low = Run(priority: 0);
        var high = Run(priority: 5);

        p1.Answer(occupied, "busy");
        var next = await p1.NextAsync();
        Assert.Equal(5, TaskRequest.Parser.ParseFrom(next.Payload).Priority);
        p1.Answer(next, "high");
        p1.Answer(await p1.NextAsync(), "low");
        await Task.WhenAll(busy, low, high);
    }

    [Fact]
    public async Task The_queue_is_bounded_and_a_task_past_the_bound_fails_at_once()
    {
        using var bounded = new TaskCoordinatorTests(new CoordinationOptions { MaxQueuedTasks = 1 });
        var waiting = bounded.Run("nobody");

        var refused = await Assert.ThrowsAsync<TaskFailedException>(() => bounded.Run("nobody"));

        Assert.Equal(RpcErrorKind.ResourceExhausted, refused.Kind);
        Assert.Contains("coordination.max_queued_tasks (1)", refused.Message);
        Assert.False(waiting.IsCompleted);
    }

    [Fact]
    public async Task Without_a_timeout_a_task_fails_at_default_task_timeout_seconds()
    {
        using var configured = new TaskCoordinatorTests(new CoordinationOptions { DefaultTaskTimeoutSeconds = 3 });
        var task = configured._coordinator.RunAsync(new TaskSpec("scan", new Dictionary<string, string>()), null, CancellationToken.None);

        configured._time.Advance(TimeSpan.FromSeconds(2.9));
        Assert.False(task.IsCompleted);
        configured._time.Advance(TimeSpan.FromSeconds(0.1));

        var failure = await Assert.ThrowsAsync<TaskFailedException>(() => task);
        Assert.Equal(RpcErrorKind.Timeout, failure.Kind);
        Assert.StartsWith("no collector instance executing task type 'scan' became available within 3 s", failure.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_instance_that_declares_no_capacity_takes_default_capacity_tasks_at_once()
    {
        using var configured = new TaskCoordinatorTests(new CoordinationOptions { DefaultCapacity = 2 });
        var peer = new Collector(++configured._nextConnection, "p-1", configured);
        Assert.True(configured._router.TryRegisterCollector(peer, new CollectorPresence("p-1", peer.Id, 1000, 0, ["task:scan"]), out var error), error);

        var tasks = new[] { configured.Run(), configured.Run(), configured.Run() };
        var first = await peer.NextAsync();
        var second = await peer.NextAsync();
        Assert.Equal(2, peer.Pending);
        Assert.Equal(1, configured._coordinator.Statistics.Queued);

        peer.Answer(first, "a");
        var third = await peer.NextAsync();
        peer.Answer(second, "b");
        peer.Answer(third, "c");
        await Task.WhenAll(tasks);
    }

    [Fact]
    public async Task With_no_instance_a_task_fails_at_its_timeout_naming_what_is_connected()
    {
        Connect("other", 2, "something-else");
        var task = Run("scan", timeoutSeconds: 2);

        _time.Advance(TimeSpan.FromSeconds(1.9));
        Assert.False(task.IsCompleted);
        _time.Advance(TimeSpan.FromSeconds(0.1));

        var failure = await Assert.ThrowsAsync<TaskFailedException>(() => task);
        Assert.Equal(RpcErrorKind.Timeout, failure.Kind);
        Assert.Equal("no collector instance executing task type 'scan' became available within 2 s; connected collectors: other (tasks: something-else)", failure.Message);
    }

    [Fact]
    public async Task A_task_waiting_for_a_type_goes_to_the_first_instance_that_registers()
    {
        var task = Run("scan");
        var p1 = Connect("p-1", 1, "scan");
        p1.Answer(await p1.NextAsync(), "late but fine");

        var result = await task;
        Assert.Equal(["procmond"], result.ExpectedCollectorTypes);
        Assert.False(result.Partial);
    }

    [Fact]
    public async Task A_disconnected_instance_s_task_goes_to_another_and_completes_once()
    {
        var p1 = Connect("p-1", 1, "scan");
        var p2 = Connect("p-2", 1, "scan");
        var task = Run();
        await p1.NextAsync();

        _router.PeerClosed(p1);
        p2.Answer(await p2.NextAsync(), "from p-2");

        var result = await task;
        Assert.Equal("p-2", Assert.Single(result.Results).CollectorId);
        Assert.Equal(1u, result.Redistributions);
        Assert.False(result.Partial);
    }

    [Fact]
    public async Task Heartbeats_lost_move_the_task_and_the_first_answer_wins_the_second_is_a_counted_duplicate()
    {
        var p1 = Connect("p-1", 1, "scan");
        var p2 = Connect("p-2", 1, "scan");
        var task = Run();
        var atP1 = await p1.NextAsync();

        // p-2 keeps sending heartbeats; p-1 falls silent for three intervals.
        for (var i = 0; i < 3; i++)
        {
            _time.Advance(Heartbeat);
            _hub.Heartbeat("p-2");
        }

        var atP2 = await p2.NextAsync();
        p2.Answer(atP2, "from p-2");
        var result = await task;
        p1.Answer(atP1, "from p-1, too late");
        await p1.AnsweredAsync();

        Assert.Equal("p-2", Assert.Single(result.Results).CollectorId);
        Assert.Equal(1u, result.Redistributions);
        Assert.Equal(1, _coordinator.Statistics.LateResults);
    }

    [Fact]
    public async Task A_failing_health_check_moves_the_task_and_keeps_the_instance_out_of_rotation_until_one_passes()
    {
        var p1 = Connect("p-1", 1, "scan");
        var p2 = Connect("p-2", 1, "scan");
        var task = Run();
        var atP1 = await p1.NextAsync();

        // The supervisor's HealthCheck of p-1 answers unhealthy; p-1 still sends heartbeats.
        _hub.ReportHealthCheck("p-1", healthy: false, "it reports unhealthy: no scan for 9.0 s");
        _time.Advance(Heartbeat);
        _hub.Heartbeat("p-1");
        _hub.Heartbeat("p-2");

        p2.Answer(await p2.NextAsync(), "from p-2");
        var result = await task;
        Assert.Equal("p-2", Assert.Single(result.Results).CollectorId);
        Assert.Equal(1u, result.Redistributions);

        // p-1's stuck call answers after all (a late result) and frees its slot; it stays out of rotation.
        p1.Answer(atP1, "from p-1, too late");
        Assert.True(SpinWait.SpinUntil(() => _coordinator.InstancesFor("scan").Single(i => i.Id == "p-1").InFlight == 0, TimeSpan.FromSeconds(30)));
        Assert.False(_coordinator.InstancesFor("scan").Single(i => i.Id == "p-1").Healthy);
        var second = Run();
        var third = Run();
        var toP2 = await p2.NextAsync();
        Assert.Equal(1, _coordinator.Statistics.Queued);
        Assert.Equal(0, p1.Pending);

        // A passing HealthCheck puts it back: the waiting task goes to p-1.
        _hub.ReportHealthCheck("p-1", healthy: true, "ok");
        var toP1 = await p1.NextAsync();
        p1.Answer(toP1, "p-1 is back");
        p2.Answer(toP2, "p-2 again");

        Assert.Equal(["p-1", "p-2"], (await Task.WhenAll(second, third)).Select(r => Assert.Single(r.Results).CollectorId).Order());
        Assert.Equal(1, _coordinator.Statistics.LateResults);
    }

    [Fact]
    public async Task A_health_check_failing_on_the_only_instance_holds_the_task_until_it_passes_or_the_instance_answers()
    {
        var p1 = Connect("p-1", 2, "scan");
        var task = Run();
        var first = await p1.NextAsync();

        // Out of rotation with nowhere else to go: the assignment waits in the queue, the call stays open.
        _hub.ReportHealthCheck("p-1", healthy: false, "the HealthCheck call failed (Timeout): no answer within 3 s");
        Assert.Equal(1, _coordinator.Statistics.Queued);
        Assert.False(task.IsCompleted);

        // Healthy again: the assignment is sent a second time; the first answer wins, the other is a duplicate.
        _hub.ReportHealthCheck("p-1", healthy: true, "ok");
        var second = await p1.NextAsync();
        p1.Answer(first, "first");
        var result = await task;
        p1.Answer(second, "second");

        Assert.Equal("first", Assert.Single(result.Results).Payload.ToStringUtf8());
        Assert.Equal(1u, result.Redistributions);
        Assert.False(result.Partial);
    }

    [Fact]
    public async Task At_the_timeout_the_result_is_partial_and_names_the_type_that_did_not_answer()
    {
        var fast = Connect("fast", 1, "scan");
        var silent = Connect("silent", 1, "scan");
        var task = Run(timeoutSeconds: 3);
        fast.Answer(await fast.NextAsync(), "data");
        await silent.NextAsync();

        // The answer reaches the coordinator on a continuation; the clock moves only once it has been taken in.
        Assert.True(SpinWait.SpinUntil(() => _coordinator.InstancesFor("scan").Single(i => i.Id == "fast").InFlight == 0, TimeSpan.FromSeconds(30)));
        Assert.False(task.IsCompleted);

        // Both keep sending heartbeats: 'silent' is alive and simply does not answer. (Without them its
        // heartbeats would be lost at 3 s too, the same instant as the deadline, and the fake clock fires
        // timers due at one instant in no fixed order.)
        for (var second = 0; second < 3; second++)
        {
            _hub.Heartbeat("fast");
            _hub.Heartbeat("silent");
            _time.Advance(Heartbeat);
        }

        var result = await task;
        Assert.True(result.Partial);
        Assert.Equal(["fast", "silent"], result.ExpectedCollectorTypes);
        Assert.Equal("fast", Assert.Single(result.Results).CollectorId);
        var missing = Assert.Single(result.Missing);
        Assert.Equal(("silent", "silent", "instance 'silent' did not answer within 3 s"), (missing.CollectorType, missing.InstanceId, missing.Reason));
    }

    [Fact]
    public async Task A_deadline_timer_that_fires_early_is_set_again_so_a_partial_result_never_completes_before_the_timeout()
    {
        using var early = new TaskCoordinatorTests(new CoordinationOptions(), new EarlyTimers(Start));
        var silent = early.Connect("silent", 1, "scan");
        var task = early.Run(timeoutSeconds: 3);
        await silent.NextAsync();

        // The deadline timer fires 1 ms before the timeout, as the runtime's millisecond timers can: not yet.
        early._time.Advance(TimeSpan.FromSeconds(3) - TimeSpan.FromMilliseconds(1));
        Assert.False(task.IsCompleted);
        early._time.Advance(TimeSpan.FromMilliseconds(1));

        var result = await task;
        Assert.True(result.Partial);
        Assert.Equal(3_000_000ul, result.DurationUs);
    }

    [Fact]
    public async Task Identical_results_from_two_collector_types_are_kept_once_in_collector_order()
    {
        var a = Connect("a", 1, "scan");
        var b = Connect("b", 1, "scan");
        var task = Run();
        b.Answer(await b.NextAsync(), "same", sequence: 7);
        a.Answer(await a.NextAsync(), "same", sequence: 3);

        var result = await task;
        Assert.Equal("a", Assert.Single(result.Results).CollectorId);
        Assert.Equal(1u, result.DuplicatesRemoved);
    }

    [Fact]
    public void The_aggregator_orders_by_collector_then_sequence_and_drops_a_repeated_sequence()
    {
        var aggregator = new ResultAggregator("t");
        foreach (var (collector, sequence, payload) in new[] { ("b", 2ul, "b2"), ("a", 9ul, "a9"), ("b", 1ul, "b1"), ("a", 9ul, "a9-again") })
        {
            aggregator.Offer(new TaskResult { CollectorId = collector, Sequence = sequence, Payload = ByteString.CopyFromUtf8(payload) }, collector);
        }

        var (results, duplicates) = aggregator.Build();
        Assert.Equal(["a9", "b1", "b2"], results.Select(r => r.Payload.ToStringUtf8()));
        Assert.Equal(1, duplicates);
    }

    /// <summary>A collector connection as the router sees it; the test answers its requests.</summary>
    private sealed class Collector(long id, string name, TaskCoordinatorTests owner) : IRpcPeer
    {
        private readonly Channel<RpcRequest> _requests = Channel.CreateUnbounded<RpcRequest>();
        private readonly Channel<bool> _answered = Channel.CreateUnbounded<bool>();
        private int _pending;

        public long Id => id;

        public string Name => name;

        public int Pending => Volatile.Read(ref _pending);

        public void DeliverRequest(RpcRequest request)
        {
            Interlocked.Increment(ref _pending);
            _requests.Writer.TryWrite(request);
        }

        public void DeliverResponse(RpcResponse response)
        {
        }

        public async Task<RpcRequest> NextAsync()
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            return await _requests.Reader.ReadAsync(timeout.Token);
        }

        public Task AnsweredAsync() => _answered.Reader.ReadAsync().AsTask();

        public void Answer(RpcRequest request, string payload, ulong sequence = 1)
        {
            var task = TaskRequest.Parser.ParseFrom(request.Payload);
            var result = new TaskResult { TaskId = task.TaskId, CollectorId = name, Sequence = sequence, PayloadType = "test", Payload = ByteString.CopyFromUtf8(payload) };
            Interlocked.Decrement(ref _pending);
            owner._router.HandleResponse(this, new RpcResponse { Correlation = request.Correlation, Status = RpcStatus.Ok, Payload = result.ToByteString() });
            _answered.Writer.TryWrite(true);
        }
    }

    /// <summary>A fake clock whose timers fire 1 ms before they are due (their first time).</summary>
    private sealed class EarlyTimers(DateTimeOffset start) : FakeTimeProvider(start)
    {
        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period) =>
            base.CreateTimer(callback, state, dueTime > TimeSpan.FromMilliseconds(1) && dueTime != Timeout.InfiniteTimeSpan ? dueTime - TimeSpan.FromMilliseconds(1) : dueTime, period);
    }
}
