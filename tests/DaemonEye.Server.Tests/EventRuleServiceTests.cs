using System.Threading.Channels;
using DaemonEye.Coordination;
using DaemonEye.Gateway;
using DaemonEye.Grains;
using DaemonEye.Protocol.Alert.V1;
using DaemonEye.Protocol.Filesystem.V1;
using DaemonEye.Protocol.Process.V1;
using DaemonEye.Protocol.V1;
using Google.Protobuf;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace DaemonEye.Server.Tests;

/// <summary>
/// The event rule service over the real subscription registry (test silo): it subscribes itself under a
/// local connection id, the gateway's directory hands that id's deliveries to it, each round runs the
/// rules whose tables got rows, alerts are de-duplicated per rule and key (counted), and a full queue
/// drops and counts. Rules from a rule directory on disk; alerts recorded from the publisher.
/// </summary>
public sealed class EventRuleServiceTests(ClusterFixture fixture) : IClassFixture<ClusterFixture>, IDisposable
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 1, 12, 0, 0, TimeSpan.Zero));
    private readonly DirectoryInfo _rules = CreateRules();
    private readonly Channel<Alert> _alerts = Channel.CreateUnbounded<Alert>();

    public void Dispose() => _rules.Delete(recursive: true);

    private static DirectoryInfo CreateRules()
    {
        var dir = Directory.CreateTempSubdirectory("de-event-rules-");
        File.WriteAllText(Path.Combine(dir.FullName, "bash.yaml"),
            "id: bash-exec\nname: Bash\nseverity: high\nkind: event\nkey: pid\nsql: SELECT pid, executable FROM process_events WHERE name = 'bash'\n");
        File.WriteAllText(Path.Combine(dir.FullName, "files.yaml"),
            "id: any-file\nname: Files\nseverity: low\nkind: event\nsql: SELECT path FROM filesystem_events\n");
        File.WriteAllText(Path.Combine(dir.FullName, "snapshot.yaml"),
            "id: snapshot-rule\nname: Snapshot\nseverity: low\nsql: SELECT pid FROM processes\n");
        return dir;
    }

    private EventRuleService Service(LocalSubscriptions local, int queue = 4096, int maxAlerts = 100)
    {
        var options = new CoordinationOptions { Rules = new RulesOptions { Directory = _rules.FullName, EventDebounceMs = 0, EventQueueBatches = queue, SuppressionSeconds = 0, MaxAlertsPerRule = maxAlerts } };
        return new EventRuleService(Options.Create(options), local, new Publisher(_alerts.Writer), _time, NullLogger<EventRuleService>.Instance);
    }

    private static PublishBatch Batch(string topic, params IMessage[] events)
    {
        var messages = events.Select(e => new Publish { Topic = topic, Payload = e.ToByteString(), Correlation = new CorrelationMetadata { CorrelationId = Guid.NewGuid().ToString("N") } }.ToByteArray()).ToList();
        var ends = new List<int>();
        var total = 0;
        foreach (var m in messages)
        {
            total += m.Length;
            ends.Add(total);
        }

        return new PublishBatch(topic, [.. messages.SelectMany(m => m)], [.. ends], messages.Count, 1);
    }

    private static ProcessLifecycle Exec(uint pid, string name) => new()
    {
        Kind = ProcessLifecycleKind.Executed,
        Process = new ProcessInfo { Pid = pid, Name = name, Executable = "/usr/bin/" + name },
        ObservedUnixMs = 1,
        CollectorId = "procmond",
    };

    [Fact]
    public async Task Events_delivered_to_its_local_subscription_raise_one_alert_per_key_and_only_rules_of_changed_tables_run()
    {
        var local = new LocalSubscriptions(fixture.Grains);
        var directory = new ConnectionDirectory(local);
        var service = Service(local);
        await service.StartAsync(CancellationToken.None);
        try
        {
            // The registry resolves the event topics to the agent's own (negative) connection.
            var registry = fixture.Grains.GetGrain<ISubscriptionRegistryGrain>(0);
            var keys = await registry.Resolve("events.process.lifecycle");
            var mine = Assert.Single(keys, k => k.ConnectionId < 0);
            Assert.Contains(await registry.Resolve("events.filesystem.created"), k => k.ConnectionId == mine.ConnectionId);

            var accepted = directory.Deliver(new DeliveryTarget(mine.ConnectionId, [mine.SubscriptionId]), Batch("events.process.lifecycle", Exec(10, "bash"), Exec(11, "sleep")), 1);
            Assert.Equal(2, accepted);

            var alert = await _alerts.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(("bash-exec", "event", "10"), (alert.RuleId, alert.RuleKind, alert.Fields[0].Value));
            Assert.Equal(["process_events"], alert.Tables);

            // The next round returns the same row (its evidence is still in the window): rematched, not raised again.
            // A new exec of bash with the same key (pid 10): a new row, suppressed as a duplicate and counted.
            directory.Deliver(new DeliveryTarget(mine.ConnectionId, [mine.SubscriptionId]), Batch("events.process.lifecycle", Exec(12, "sleep")), 3);
            var status = await WaitAsync(service, 2);
            Assert.Equal((1L, 0L, 1L), (status.AlertsPublished, status.AlertsSuppressed, status.RowsRematched));
            var again = Exec(10, "bash");
            again.Process.Executable = "/bin/bash";
            directory.Deliver(new DeliveryTarget(mine.ConnectionId, [mine.SubscriptionId]), Batch("events.process.lifecycle", again), 4);
            status = await WaitAsync(service, 3);
            Assert.Equal((1L, 1L, 2L), (status.AlertsPublished, status.AlertsSuppressed, status.RowsRematched));

            // Only bash-exec reads process_events: any-file never ran; the snapshot rule is not an event rule.
            Assert.Equal(3, status.Evaluations);
            Assert.Equal(4, status.Windows.Single(w => w.Table == "process_events").Rows);
            Assert.Equal((4, 0), (status.MessagesReceived, status.MessagesDropped));

            directory.Deliver(new DeliveryTarget(mine.ConnectionId, [3]), Batch("events.filesystem.created", new FileEvent { Kind = FileEventKind.Created, Path = "/tmp/x", CollectorId = "fsmond" }), 1);
            var file = await _alerts.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(("any-file", "/tmp/x"), (file.RuleId, file.Fields[0].Value));
            Assert.Equal(4, (await WaitAsync(service, 4)).Evaluations);
        }
        finally
        {
            await service.StopAsync(CancellationToken.None);
            service.Dispose();
        }

        Assert.Empty(await fixture.Grains.GetGrain<ISubscriptionRegistryGrain>(0).Resolve("events.network.connection"));
    }

    [Fact]
    public async Task Rows_raised_before_do_not_crowd_a_new_match_out_of_max_alerts_per_rule()
    {
        // The window holds more earlier matches than max_alerts_per_rule, and the rule returns them
        // first: the new row must still be raised, and only new rows count against the cap.
        var local = new LocalSubscriptions(fixture.Grains);
        var directory = new ConnectionDirectory(local);
        var service = Service(local, maxAlerts: 2);
        await service.StartAsync(CancellationToken.None);
        try
        {
            var mine = Assert.Single(await fixture.Grains.GetGrain<ISubscriptionRegistryGrain>(0).Resolve("events.process.lifecycle"), k => k.ConnectionId < 0);
            var target = new DeliveryTarget(mine.ConnectionId, [mine.SubscriptionId]);
            for (uint pid = 1; pid <= 4; pid++)
            {
                directory.Deliver(target, Batch("events.process.lifecycle", Exec(pid, "bash")), pid);
                var alert = await _alerts.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30));
                Assert.Equal(pid.ToString(System.Globalization.CultureInfo.InvariantCulture), alert.Fields[0].Value);
            }

            // Three new rows in one round: two raised, the third counted (logged) and not published.
            directory.Deliver(target, Batch("events.process.lifecycle", Exec(5, "bash"), Exec(6, "bash"), Exec(7, "bash")), 5);
            var status = await WaitAsync(service, 5);
            Assert.Equal(6, status.AlertsPublished);
            Assert.Equal(["5", "6"], [(await _alerts.Reader.ReadAsync()).Fields[0].Value, (await _alerts.Reader.ReadAsync()).Fields[0].Value]);
            Assert.False(_alerts.Reader.TryRead(out _));
        }
        finally
        {
            await service.StopAsync(CancellationToken.None);
            service.Dispose();
        }
    }

    [Fact]
    public void A_full_queue_drops_the_batch_and_counts_its_messages()
    {
        using var service = Service(new LocalSubscriptions(fixture.Grains), queue: 16);
        for (var i = 0; i < 20; i++)
        {
            service.Deliver(Batch("events.process.lifecycle", Exec((uint)i, "sleep"), Exec((uint)i + 100, "sleep")), 1);
        }

        Assert.Equal(8, service.Status().MessagesDropped);
    }

    private static async Task<EventRulesReport> WaitAsync(EventRuleService service, long rounds)
    {
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        return await service.WaitForRoundsAsync(rounds, deadline.Token);
    }

    private sealed class Publisher(ChannelWriter<Alert> alerts) : IBusPublisher
    {
        public Task PublishAsync(string topic, ByteString payload, string contentType, CorrelationMetadata correlation, CancellationToken cancellationToken = default)
        {
            var alert = Alert.Parser.ParseFrom(payload);
            Assert.Equal("events.alert." + alert.Severity, topic);
            Assert.Equal("alert", correlation.WorkflowStage);
            alerts.TryWrite(alert);
            return Task.CompletedTask;
        }
    }
}
