using System.Text;
using DaemonEye.Client;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.V1;
using DaemonEye.Topics;
using Microsoft.Extensions.Time.Testing;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>One agent shared by the SDK tests that do not disturb each other (each uses its own topics and client ids).</summary>
public sealed class SharedAgentFixture : IAsyncLifetime
{
    internal AgentProcess Agent { get; private set; } = null!;

    public async Task InitializeAsync() => Agent = await AgentProcess.StartAsync(new Dictionary<string, string>(TestTokens.AgentSettings("procmond-handshake")));

    public async Task DisposeAsync()
    {
        if (Agent is not null)
        {
            await Agent.DisposeAsync();
        }
    }
}

/// <summary>
/// The SDK's own behaviour — handshake, per-topic numbering, correlation, metadata, validation,
/// dispose — seen by a real subscriber through the real agent. (Overlapping subscriptions,
/// unsubscribe, Dropped notices and reconnection after a restart are in <see cref="BusEndToEndTests"/>.)
/// </summary>
public sealed class BusClientEndToEndTests(SharedAgentFixture fixture) : IClassFixture<SharedAgentFixture>
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    private BusClientOptions Options(string id) => new()
    {
        SocketPath = fixture.Agent.SocketPath,
        ClientId = id,
        AutoReconnect = false,
    };

    /// <summary>Reads exactly <paramref name="count"/> messages, then checks (after a Ping barrier) that no more came.</summary>
    private static async Task<List<BusMessage>> TakeExactlyAsync(BusClient client, BusSubscription subscription, int count)
    {
        var list = new List<BusMessage>();
        using var cts = new CancellationTokenSource(Patience);
        while (list.Count < count)
        {
            list.Add(await subscription.Reader.ReadAsync(cts.Token));
        }

        await client.FlushAsync(cts.Token);
        Assert.False(subscription.Reader.TryRead(out var extra), $"an unexpected message arrived on {extra?.Topic}");
        return list;
    }

    private static ulong UnixNanos(DateTimeOffset when) => (ulong)(when - DateTimeOffset.UnixEpoch).Ticks * 100;

    [Fact]
    public async Task Handshake_introduces_the_client()
    {
        var options = Options("procmond-handshake");
        options.Role = Role.Collector;
        options.RegistrationToken = TestTokens.For("procmond-handshake");
        options.Capabilities.Add("publish:events.process.#");
        options.Capabilities.Add("capacity:2");
        await using var client = await BusClient.ConnectAsync(options);

        Assert.Matches("^c[0-9]+$", client.ConnectionId);
        // The agent registered what the Hello declared, and saw this process at the other end of the
        // socket. It records a collector it did not start with fire-and-forget grain calls and
        // announces it on no topic, so there is no event to wait for: ask until the record is there.
        using var patience = new CancellationTokenSource(Patience);
        var status = new CollectorStatus();
        while (status.State != CollectorState.Running || status.Capabilities.Count == 0)
        {
            var list = await IpcProbe.SendAsync(fixture.Agent.IpcSocketPath, new IpcRequest { ListCollectors = new ListCollectorsRequest() }, patience.Token);
            status = list.ListCollectors.Collectors.SingleOrDefault(c => c.Id == "procmond-handshake") ?? status;
        }

        // The agent lists what it granted (the role's own rights and what the Hello declared); the
        // SDK holds the same list from Welcome, and nothing was refused.
        Assert.Contains("role:collector", status.Capabilities);
        Assert.Contains("publish:events.process.#", status.Capabilities);
        Assert.Contains("subscribe:control.collector.procmond-handshake.#", status.Capabilities);
        Assert.Contains("capacity:2", status.Capabilities);
        Assert.Equal(status.Capabilities, client.GrantedCapabilities);
        Assert.Empty(client.RefusedCapabilities);
        Assert.Equal((uint)Environment.ProcessId, status.Pid);
    }

    [Fact]
    public async Task Each_topic_stream_is_numbered_from_one_with_fresh_correlation_ids()
    {
        await using var subscriber = await BusClient.ConnectAsync(Options("numbering-sub"));
        var subscription = await subscriber.SubscribeAsync("events.numbering.#");
        var clock = new FakeTimeProvider(new DateTimeOffset(2025, 1, 2, 3, 4, 5, TimeSpan.Zero));
        var options = Options("numbering-pub");
        options.TimeProvider = clock;
        await using var publisher = await BusClient.ConnectAsync(options);

        string[] topics = ["events.numbering.a", "events.numbering.b", "events.numbering.a", "events.numbering.a", "events.numbering.b"];
        foreach (var topic in topics)
        {
            await publisher.PublishAsync(topic, "x"u8.ToArray());
        }

        await publisher.FlushAsync().WaitAsync(Patience);
        var received = await TakeExactlyAsync(subscriber, subscription, topics.Length);

        // Per topic, in publish order: the publisher numbers each topic from 1, and so does the agent.
        foreach (var topic in topics.Distinct())
        {
            var stream = received.Where(m => m.Topic == topic).ToList();
            var expected = Enumerable.Range(1, topics.Count(t => t == topic)).Select(i => (ulong)i);
            Assert.Equal(expected, stream.Select(m => m.Correlation.SequenceNumber));
            Assert.Equal(expected, stream.Select(m => m.Sequence));
        }

        Assert.All(received, m =>
        {
            Assert.Matches("^[0-9a-f]{32}$", m.CorrelationId);
            Assert.Equal(m.CorrelationId, m.Correlation.RootCorrelationId);
            Assert.Equal("", m.Correlation.ParentCorrelationId);
            Assert.Equal(UnixNanos(clock.GetUtcNow()), m.TimestampUnixNanos);
        });
        Assert.Equal(topics.Length, received.Select(m => m.CorrelationId).Distinct().Count());
    }

    [Fact]
    public async Task Caller_metadata_is_delivered_unchanged()
    {
        await using var subscriber = await BusClient.ConnectAsync(Options("metadata-sub"));
        var subscription = await subscriber.SubscribeAsync("events.metadata.a");
        await using var publisher = await BusClient.ConnectAsync(Options("metadata-pub"));
        var when = new DateTimeOffset(2024, 6, 1, 0, 0, 0, TimeSpan.Zero);
        await publisher.PublishAsync("events.metadata.a", "1"u8.ToArray(), new PublishOptions { CorrelationId = "req-9", ParentCorrelationId = "req-1", SequenceNumber = 77, Timestamp = when, ContentType = "text/plain", WorkflowStage = "scan" });
        await publisher.PublishAsync("events.metadata.a", "2"u8.ToArray(), new PublishOptions { CorrelationId = "solo" });
        await publisher.FlushAsync().WaitAsync(Patience);
        var received = await TakeExactlyAsync(subscriber, subscription, 2);

        var first = received[0];
        Assert.Equal("1", Encoding.UTF8.GetString(first.Payload.Span));
        Assert.Equal("req-9", first.Correlation.CorrelationId);
        Assert.Equal("req-1", first.Correlation.ParentCorrelationId);
        Assert.Equal("", first.Correlation.RootCorrelationId);
        Assert.Equal(77UL, first.Correlation.SequenceNumber);
        Assert.Equal("scan", first.Correlation.WorkflowStage);
        Assert.Equal("text/plain", first.ContentType);
        Assert.Equal(UnixNanos(when), first.TimestampUnixNanos);
        Assert.Equal(when, first.Timestamp);
        Assert.Equal(1UL, first.Sequence);

        // An explicit sequence does not consume the topic's own numbering; a lone id is its own root.
        var second = received[1];
        Assert.Equal(1UL, second.Correlation.SequenceNumber);
        Assert.Equal("solo", second.Correlation.CorrelationId);
        Assert.Equal("solo", second.Correlation.RootCorrelationId);
        Assert.Equal(2UL, second.Sequence);
    }

    [Fact]
    public async Task Invalid_topics_and_patterns_fail_fast_with_the_reason_and_the_connection_stays_usable()
    {
        await using var client = await BusClient.ConnectAsync(Options("invalid"));
        var e = await Assert.ThrowsAsync<TopicFormatException>(async () => await client.PublishAsync("events.*", ReadOnlyMemory<byte>.Empty));
        Assert.Contains("'*'", e.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<TopicFormatException>(() => client.SubscribeAsync("events.#.x"));
        await Assert.ThrowsAsync<ArgumentException>(async () => await client.PublishAsync("events.invalid.a", ReadOnlyMemory<byte>.Empty, new PublishOptions { CorrelationId = new string('c', 129) }));

        // Nothing reached the agent: the connection is healthy and the next valid message is the topic's first.
        var subscription = await client.SubscribeAsync("events.invalid.a");
        await client.PublishAsync("events.invalid.a", "ok"u8.ToArray());
        await client.FlushAsync().WaitAsync(Patience);
        var message = Assert.Single(await TakeExactlyAsync(client, subscription, 1));
        Assert.Equal(1UL, message.Sequence);
        Assert.Equal(1UL, message.Correlation.SequenceNumber);
    }

    [Fact]
    public async Task Dispose_sends_what_is_buffered()
    {
        await using var subscriber = await BusClient.ConnectAsync(Options("dispose-sub"));
        var subscription = await subscriber.SubscribeAsync("events.dispose.a");
        var publisher = await BusClient.ConnectAsync(Options("dispose-pub"));
        const int Count = 1000;
        for (var i = 0; i < Count; i++)
        {
            await publisher.PublishAsync("events.dispose.a", Encoding.UTF8.GetBytes(i.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        }

        // No FlushAsync: disposing is what must send them.
        await publisher.DisposeAsync();
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await publisher.PublishAsync("events.dispose.a", new byte[1]));

        var received = await TakeExactlyAsync(subscriber, subscription, Count);
        Assert.Equal(Enumerable.Range(0, Count).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)), received.Select(m => Encoding.UTF8.GetString(m.Payload.Span)));
        Assert.Equal(0, subscriber.DroppedTotal);
    }

    [Fact]
    public async Task A_handler_subscription_and_a_buffered_one_on_the_same_client_each_get_every_message_in_order()
    {
        const int PerTopic = 50;
        await using var subscriber = await BusClient.ConnectAsync(Options("handler-sub"));
        var handled = new List<(string Topic, ulong Sequence, string Payload)>();
        var all = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await subscriber.SubscribeAsync("events.handler.#", (in BusDelivery d) =>
        {
            handled.Add((d.Topic, d.Sequence, Encoding.UTF8.GetString(d.Payload)));
            if (handled.Count == 2 * PerTopic)
            {
                all.TrySetResult();
            }
        });
        // Overlaps the handler's pattern: each message on events.handler.a is one Deliver naming both subscriptions.
        var buffered = await subscriber.SubscribeAsync("events.handler.a");

        await using var publisher = await BusClient.ConnectAsync(Options("handler-pub"));
        for (var i = 1; i <= PerTopic; i++)
        {
            await publisher.PublishAsync("events.handler.a", Encoding.UTF8.GetBytes($"a{i}"));
            await publisher.PublishAsync("events.handler.b", Encoding.UTF8.GetBytes($"b{i}"));
        }

        await publisher.FlushAsync();
        await all.Task.WaitAsync(Patience);

        foreach (var topic in new[] { "a", "b" })
        {
            var stream = handled.Where(h => h.Topic == $"events.handler.{topic}").ToList();
            Assert.Equal(Enumerable.Range(1, PerTopic).Select(i => $"{topic}{i}"), stream.Select(h => h.Payload));
            Assert.Equal(Enumerable.Range(1, PerTopic).Select(i => (ulong)i), stream.Select(h => h.Sequence));
        }

        var received = await TakeExactlyAsync(subscriber, buffered, PerTopic);
        Assert.Equal(Enumerable.Range(1, PerTopic).Select(i => $"a{i}"), received.Select(m => Encoding.UTF8.GetString(m.Payload.Span)));
        Assert.Equal(2 * PerTopic, handled.Count);
    }

    [Fact]
    public async Task A_missing_socket_is_reported_with_its_path()
    {
        var directory = Directory.CreateTempSubdirectory("de-e2e-nosocket-");
        try
        {
            var options = new BusClientOptions { SocketPath = Path.Combine(directory.FullName, "run", "bus.sock") };
            var e = await Assert.ThrowsAsync<BusConnectionException>(() => BusClient.ConnectAsync(options));
            Assert.Contains("agent socket not found at " + options.SocketPath, e.Message, StringComparison.Ordinal);
            Assert.Contains("is daemoneye-agent running?", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }
}
