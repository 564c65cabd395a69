using System.Threading.Channels;
using DaemonEye.Configuration;
using DaemonEye.Coordination;
using DaemonEye.Gateway;
using DaemonEye.Gateway.Rpc;
using DaemonEye.Protocol.Process.V1;
using DaemonEye.Protocol.Task.V1;
using DaemonEye.Protocol.V1;
using Google.Protobuf;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace DaemonEye.Server.Tests;

/// <summary>
/// The rule service's coordination.rules keys: snapshot_timeout_seconds and max_alerts_per_rule, over
/// the real task coordinator and RPC router on a fake clock, with a rule file on disk and an
/// in-process collector whose snapshot request the test answers.
/// </summary>
public sealed class DetectionRuleServiceTests : IDisposable
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 1, 12, 0, 0, TimeSpan.Zero));
    private readonly DirectoryInfo _rules = Directory.CreateTempSubdirectory("de-rule-service-");
    private readonly RpcRouter _router;
    private readonly TaskCoordinator _coordinator;
    private readonly DetectionRuleService _service;
    private readonly List<string> _published = [];

    public DetectionRuleServiceTests()
    {
        var hub = new DaemonEye.Gateway.Collectors.CollectorDirectory(_time, TimeSpan.FromSeconds(5));
        var rpcOptions = Options.Create(new RpcOptions { DefaultTimeoutSeconds = 30, MaxPendingRequests = 1000 });
        _router = new RpcRouter(rpcOptions, _time, hub, NullLogger<RpcRouter>.Instance);
        var options = new CoordinationOptions
        {
            Rules = new RulesOptions { Directory = _rules.FullName, IntervalSeconds = 0, SnapshotTimeoutSeconds = 2, MaxAlertsPerRule = 2 },
        };
        _coordinator = new TaskCoordinator(Options.Create(options), Options.Create(new ProcessManagerOptions()), Options.Create(new List<CollectorDefinition>()),
            new AgentRpcClient(_router, _time, rpcOptions), hub, _time, NullLogger<TaskCoordinator>.Instance);
        _service = new DetectionRuleService(Options.Create(options), _coordinator, new Publisher(_published), _time, NullLogger<DetectionRuleService>.Instance);
        File.WriteAllText(Path.Combine(_rules.FullName, "every-process.yaml"),
            "id: every-process\nname: Every process\nseverity: low\ndescription: matches every row\nsql: SELECT pid, name FROM processes\n");
    }

    public void Dispose()
    {
        _service.Dispose();
        _coordinator.Dispose();
        _router.Dispose();
        _rules.Delete(recursive: true);
    }

    [Fact]
    public async Task Without_a_collector_offering_process_snapshot_the_rule_waits_and_nothing_is_asked()
    {
        var report = await _service.RunAsync(null, CancellationToken.None);

        var outcome = Assert.Single(report.Outcomes);
        Assert.Equal(["process.snapshot"], outcome.WaitingFor);
        Assert.Equal(["processes"], outcome.Needs.Tables);
        Assert.Empty(report.Evaluation!.Tasks);
        Assert.Equal(0, _coordinator.Statistics.Submitted);
        Assert.Empty(_published);
    }

    [Fact]
    public async Task A_collector_that_does_not_answer_fails_the_run_at_snapshot_timeout_seconds()
    {
        var collector = new Collector(1, "procmond", _router);
        Assert.True(_router.TryRegisterCollector(collector, new CollectorPresence("procmond", 1, 1000, 0, ["task:process.snapshot", "capacity:1"]), out var error), error);
        var run = _service.RunAsync(null, CancellationToken.None);
        await collector.NextAsync();

        _time.Advance(TimeSpan.FromSeconds(1.9));
        Assert.False(run.IsCompleted);
        _time.Advance(TimeSpan.FromSeconds(0.1));

        var failure = await Assert.ThrowsAsync<TaskFailedException>(() => run);
        Assert.Equal(RpcErrorKind.Timeout, failure.Kind);
        Assert.Contains("within 2 s", failure.Message, StringComparison.Ordinal);
        Assert.Empty(_published);
    }

    [Fact]
    public async Task A_rule_matching_five_processes_raises_max_alerts_per_rule_alerts()
    {
        var collector = new Collector(1, "procmond", _router);
        Assert.True(_router.TryRegisterCollector(collector, new CollectorPresence("procmond", 1, 1000, 0, ["task:process.snapshot", "capacity:1"]), out var error), error);

        var run = _service.RunAsync(null, CancellationToken.None);
        var request = await collector.NextAsync();
        var snapshot = new ProcessSnapshot { CollectorId = "procmond", TakenUnixMs = 1, Reason = "task" };
        for (uint pid = 10; pid < 15; pid++)
        {
            snapshot.Processes.Add(new ProcessInfo { Pid = pid, Ppid = 1, Name = $"p{pid}", Executable = $"/usr/bin/p{pid}", StartTimeUnixMs = pid });
        }

        collector.Answer(request, DetectionRuleService.SnapshotPayloadType, snapshot.ToByteString());
        var report = await run;

        Assert.Equal(5, report.Processes);
        var (_, evaluation) = Assert.Single(report.Outcomes);
        Assert.Equal(5, evaluation.TotalRows);
        Assert.Equal(2, evaluation.Rows.Count);
        Assert.Equal(2, report.AlertsPublished);
        Assert.Equal(["events.alert.low", "events.alert.low"], _published);
    }

    private sealed class Publisher(List<string> topics) : IBusPublisher
    {
        public Task PublishAsync(string topic, ByteString payload, string contentType, CorrelationMetadata correlation, CancellationToken cancellationToken = default)
        {
            lock (topics)
            {
                topics.Add(topic);
            }

            return Task.CompletedTask;
        }
    }

    private sealed class Collector(long id, string name, RpcRouter router) : IRpcPeer
    {
        private readonly Channel<RpcRequest> _requests = Channel.CreateUnbounded<RpcRequest>();

        public long Id => id;

        public string Name => name;

        public void DeliverRequest(RpcRequest request) => _requests.Writer.TryWrite(request);

        public void DeliverResponse(RpcResponse response)
        {
        }

        public async Task<RpcRequest> NextAsync()
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            return await _requests.Reader.ReadAsync(timeout.Token);
        }

        public void Answer(RpcRequest request, string payloadType, ByteString payload)
        {
            var task = Protocol.Task.V1.TaskRequest.Parser.ParseFrom(request.Payload);
            var result = new TaskResult { TaskId = task.TaskId, CollectorId = name, Sequence = 1, PayloadType = payloadType, Payload = payload };
            router.HandleResponse(this, new RpcResponse { Correlation = request.Correlation, Status = RpcStatus.Ok, Payload = result.ToByteString() });
        }
    }
}
