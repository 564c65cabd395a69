using System.Threading.Channels;
using DaemonEye.Configuration;
using DaemonEye.Coordination;
using DaemonEye.Gateway;
using DaemonEye.Gateway.Collectors;
using DaemonEye.Gateway.Rpc;
using DaemonEye.Protocol.Alert.V1;
using DaemonEye.Protocol.Network.V1;
using DaemonEye.Protocol.Process.V1;
using DaemonEye.Protocol.Task.V1;
using DaemonEye.Protocol.V1;
using Google.Protobuf;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace DaemonEye.Server.Tests;

/// <summary>
/// Rules across collector types: the tables a rule reads as SQLite reports them, one task per needed
/// type under one evaluation correlation, a join of processes and connections with both collectors'
/// results in the alert's chain, partial data flagged, and a rule waiting while no collector offers
/// what it needs. Real coordinator and RPC router, in-process collectors, fake clock.
/// </summary>
public sealed class MultiCollectorRuleTests : IDisposable
{
    private const string JoinRule = """
        id: shell-on-socket
        name: Shell with a socket as stdin
        severity: critical
        key: pid
        sql: |
          SELECT p.pid, p.name, c.remote_address, c.remote_port
          FROM processes p JOIN connections c ON c.inode = p.stdin_socket
        """;

    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 1, 12, 0, 0, TimeSpan.Zero));
    private readonly DirectoryInfo _rules = Directory.CreateTempSubdirectory("de-multi-rules-");
    private readonly CollectorDirectory _directory;
    private readonly RpcRouter _router;
    private readonly TaskCoordinator _coordinator;
    private readonly DetectionRuleService _service;
    private readonly List<(string Topic, Alert Alert, CorrelationMetadata Correlation)> _published = [];
    private readonly Channel<(TaskEvent Event, CorrelationMetadata Correlation)> _taskEvents = Channel.CreateUnbounded<(TaskEvent, CorrelationMetadata)>();

    public MultiCollectorRuleTests()
    {
        _directory = new CollectorDirectory(_time, TimeSpan.FromSeconds(5));
        var rpcOptions = Options.Create(new RpcOptions { DefaultTimeoutSeconds = 30, MaxPendingRequests = 1000 });
        _router = new RpcRouter(rpcOptions, _time, _directory, NullLogger<RpcRouter>.Instance);
        var options = new CoordinationOptions
        {
            Rules = new RulesOptions { Directory = _rules.FullName, IntervalSeconds = 0, SnapshotTimeoutSeconds = 2, SuppressionSeconds = 60 },
        };
        _coordinator = new TaskCoordinator(Options.Create(options), Options.Create(new ProcessManagerOptions()), Options.Create(new List<CollectorDefinition>()),
            new AgentRpcClient(_router, _time, rpcOptions), _directory, _time, NullLogger<TaskCoordinator>.Instance, new Publisher(_published, _taskEvents.Writer));
        _service = new DetectionRuleService(Options.Create(options), _coordinator, new Publisher(_published, _taskEvents.Writer), _time, NullLogger<DetectionRuleService>.Instance);
        File.WriteAllText(Path.Combine(_rules.FullName, "join.yaml"), JoinRule);
    }

    public void Dispose()
    {
        _service.Dispose();
        _coordinator.Dispose();
        _router.Dispose();
        _directory.Dispose();
        _rules.Delete(recursive: true);
    }

    [Theory]
    [InlineData("SELECT count(*) FROM processes", "processes")]
    [InlineData("SELECT p.pid FROM processes p JOIN connections c ON c.pid = p.pid", "connections processes")]
    [InlineData("WITH f AS (SELECT path FROM file_events) SELECT path FROM f WHERE path IN (SELECT pattern FROM watch_lists)", "file_events watch_lists")]
    [InlineData("SELECT 1 WHERE EXISTS (SELECT 1 FROM listening_ports)", "listening_ports")]
    public void The_tables_a_rule_reads_come_from_sqlite(string sql, string tables)
    {
        Assert.Equal(tables.Split(' '), SnapshotDatabase.TablesRead(sql));
    }

    [Fact]
    public void Tables_map_to_the_task_types_that_fill_them()
    {
        var needs = RuleRequirements.Of("SELECT p.pid FROM processes p, connections c, file_events f, watch_lists w WHERE 0");
        Assert.Equal(["file.snapshot", "network.snapshot", "process.snapshot"], needs.TaskTypes);
        Assert.Equal(["connections", "file_events", "processes", "watch_lists"], needs.Tables);
    }

    [Fact]
    public async Task A_join_of_processes_and_connections_raises_one_alert_with_both_collectors_in_its_chain()
    {
        var procmond = Connect("procmond", "process.snapshot");
        var netmond = Connect("netmond", "network.snapshot");

        var run = _service.RunAsync(null, CancellationToken.None);
        var processRequest = await procmond.NextAsync();
        var networkRequest = await netmond.NextAsync();
        procmond.Answer(processRequest, EvaluationGatherer.ProcessSnapshotPayloadType, Processes().ToByteString());
        netmond.Answer(networkRequest, EvaluationGatherer.NetworkSnapshotPayloadType, Network().ToByteString());
        var report = await run;

        // One task per type, both children of the one evaluation correlation.
        Assert.Equal(processRequest.Correlation.RootCorrelationId, networkRequest.Correlation.RootCorrelationId);
        var tasks = report.Evaluation!.Tasks.Values.Select(t => t.Result!).ToList();
        Assert.All(tasks, t => Assert.Equal(report.Evaluation.Correlation.RootCorrelationId, t.RootCorrelationId));

        var (topic, alert, correlation) = Assert.Single(_published);
        Assert.Equal("events.alert.critical", topic);
        Assert.Equal(["100", "bash", "127.0.0.1", "4444"], alert.Fields.Select(f => f.Value));
        Assert.Equal(["process.snapshot", "network.snapshot"], alert.Sources.Select(s => s.TaskType).Order(StringComparer.Ordinal).Reverse());
        Assert.Equal(["netmond", "procmond"], alert.Sources.Select(s => s.CollectorId).Order(StringComparer.Ordinal));
        Assert.All(alert.Sources, s => Assert.False(s.Missing));
        Assert.Equal(report.Evaluation.Correlation.CorrelationId, alert.EvaluationCorrelationId);
        Assert.Equal(alert.EvaluationCorrelationId, correlation.ParentCorrelationId);
        Assert.Equal(alert.RootCorrelationId, correlation.RootCorrelationId);
        Assert.Equal(["connections", "processes"], alert.Tables);
        Assert.False(alert.PartialSnapshot);
        Assert.True(report.TableChanges.FullLoad);

        // Every task was announced, assigned, answered and completed on control.collector.task, with its chain.
        var events = new List<TaskEvent>();
        using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
        {
            while (events.Count < 8)
            {
                var (e, envelope) = await _taskEvents.Reader.ReadAsync(timeout.Token);
                Assert.Equal(e.CorrelationId, envelope.ParentCorrelationId);
                events.Add(e);
            }
        }

        foreach (var task in tasks)
        {
            var mine = events.Where(e => e.TaskId == task.TaskId).ToList();
            Assert.Equal([TaskEventKind.Announced, TaskEventKind.Assigned, TaskEventKind.Answered, TaskEventKind.Completed], mine.Select(e => e.Kind));
            Assert.All(mine, e => Assert.Equal((task.CorrelationId, report.Evaluation.Correlation.CorrelationId, task.RootCorrelationId), (e.CorrelationId, e.ParentCorrelationId, e.RootCorrelationId)));
            Assert.Equal(task.TaskType == "process.snapshot" ? "procmond" : "netmond", mine[1].InstanceId);
            Assert.Equal((mine[1].InstanceId, mine[1].InstanceId), (mine[2].InstanceId, mine[2].Result.CollectorId));
            var summary = mine[3].Summary;
            Assert.Equal(mine[1].InstanceId, Assert.Single(summary.Results).CollectorId);
            Assert.False(summary.Partial);
        }

        // The same finding again within suppression_seconds is counted, not published.
        run = _service.RunAsync(null, CancellationToken.None);
        procmond.Answer(await procmond.NextAsync(), EvaluationGatherer.ProcessSnapshotPayloadType, Processes().ToByteString());
        netmond.Answer(await netmond.NextAsync(), EvaluationGatherer.NetworkSnapshotPayloadType, Network().ToByteString());
        report = await run;
        Assert.Equal(1, report.SuppressedAlerts);
        Assert.Single(_published);

        // The tables stayed from the first run: the same answers again changed no row.
        Assert.False(report.TableChanges.FullLoad);
        Assert.Equal((0, 0, 0), (report.TableChanges.Inserted, report.TableChanges.Updated, report.TableChanges.Deleted));
        Assert.Equal(Processes().Processes.Count, report.TableRows["processes"]);
    }

    [Fact]
    public async Task A_rule_waits_while_no_collector_offers_its_type_and_recovers_when_one_does()
    {
        var procmond = Connect("procmond", "process.snapshot");

        var (states, _) = _service.States();
        Assert.Equal(["network.snapshot"], Assert.Single(states).WaitingFor);
        var report = await _service.RunAsync(null, CancellationToken.None);
        Assert.Equal(["network.snapshot"], Assert.Single(report.Outcomes).WaitingFor);
        Assert.Equal(0, procmond.Pending);

        var netmond = Connect("netmond", "network.snapshot");
        (states, _) = _service.States();
        Assert.False(Assert.Single(states).Waiting);

        // netmond answers, procmond does not: the run completes at the timeout, the alert-less rule is partial.
        var run = _service.RunAsync(null, CancellationToken.None);
        await procmond.NextAsync();
        netmond.Answer(await netmond.NextAsync(), EvaluationGatherer.NetworkSnapshotPayloadType, Network().ToByteString());
        _time.Advance(TimeSpan.FromSeconds(2));
        report = await run;
        var outcome = Assert.Single(report.Outcomes);
        Assert.True(outcome.Partial);
        Assert.StartsWith("not evaluated: no data for process.snapshot", outcome.Evaluation.Error, StringComparison.Ordinal);
    }

    private static ProcessSnapshot Processes()
    {
        var snapshot = new ProcessSnapshot { CollectorId = "procmond", TakenUnixMs = 1, Reason = "task" };
        snapshot.Processes.Add(new ProcessInfo { Pid = 100, Ppid = 1, Name = "bash", Executable = "/usr/bin/bash", StartTimeUnixMs = 5, Stdin = "socket:[777]", Stdout = "socket:[777]" });
        snapshot.Processes.Add(new ProcessInfo { Pid = 101, Ppid = 1, Name = "bash", Executable = "/usr/bin/bash", StartTimeUnixMs = 6, Stdin = "/dev/pts/0" });
        return snapshot;
    }

    private static NetworkSnapshot Network()
    {
        var snapshot = new NetworkSnapshot { CollectorId = "netmond", TakenUnixMs = 1 };
        snapshot.Connections.Add(new Connection
        {
            Transport = Transport.Tcp, Family = IpFamily.Ipv4, State = "ESTABLISHED", Inode = 777, Direction = Direction.Outbound,
            Local = new Endpoint { Address = "127.0.0.1", Port = 50000 }, Remote = new Endpoint { Address = "127.0.0.1", Port = 4444 },
            Owner = new SocketOwner { Attributed = true, Pid = 100, Name = "bash" },
        });
        return snapshot;
    }

    private Collector Connect(string id, string taskType)
    {
        var collector = new Collector(_router.GetHashCode() + id.Length, id, _router);
        Assert.True(_router.TryRegisterCollector(collector, new CollectorPresence(id, collector.Id, 1000, 0, ["task:" + taskType, "capacity:1"]), out var error), error);
        return collector;
    }

    private sealed class Publisher(List<(string, Alert, CorrelationMetadata)> published, ChannelWriter<(TaskEvent, CorrelationMetadata)> tasks) : IBusPublisher
    {
        public Task PublishAsync(string topic, ByteString payload, string contentType, CorrelationMetadata correlation, CancellationToken cancellationToken = default)
        {
            if (topic == "control.collector.task")
            {
                Assert.Equal("application/x-protobuf; messageType=daemoneye.task.v1.TaskEvent", contentType);
                tasks.TryWrite((TaskEvent.Parser.ParseFrom(payload), correlation));
                return Task.CompletedTask;
            }

            lock (published)
            {
                published.Add((topic, Alert.Parser.ParseFrom(payload), correlation));
            }

            return Task.CompletedTask;
        }
    }

    private sealed class Collector(long id, string name, RpcRouter router) : IRpcPeer
    {
        private readonly Channel<RpcRequest> _requests = Channel.CreateUnbounded<RpcRequest>();
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

        public void Answer(RpcRequest request, string payloadType, ByteString payload)
        {
            Interlocked.Decrement(ref _pending);
            var task = Protocol.Task.V1.TaskRequest.Parser.ParseFrom(request.Payload);
            var result = new TaskResult { TaskId = task.TaskId, CollectorId = name, Sequence = 1, PayloadType = payloadType, Payload = payload };
            router.HandleResponse(this, new RpcResponse { Correlation = request.Correlation, Status = RpcStatus.Ok, Payload = result.ToByteString() });
        }
    }
}
