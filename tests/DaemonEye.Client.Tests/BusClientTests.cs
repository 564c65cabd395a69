using System.Text;
using DaemonEye.Protocol.V1;
using DaemonEye.Topics;
using Microsoft.Extensions.Time.Testing;

namespace DaemonEye.Client.Tests;

/// <summary>The SDK against the in-process fake agent: no silo needed.</summary>
public sealed class BusClientTests : IAsyncLifetime
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);
    private readonly FakeAgent _agent = new();

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _agent.DisposeAsync();

    private BusClientOptions Options(string id = "test") => new()
    {
        SocketPath = _agent.SocketPath,
        ClientId = id,
        ReconnectMinDelay = TimeSpan.FromMilliseconds(1),
        ReconnectMaxDelay = TimeSpan.FromMilliseconds(20),
    };

    private async Task<List<Publish>> ReceivedAsync(int count)
    {
        var list = new List<Publish>();
        using var cts = new CancellationTokenSource(Patience);
        while (list.Count < count)
        {
            list.Add(await _agent.Received.Reader.ReadAsync(cts.Token));
        }

        return list;
    }

    private static async Task<List<BusMessage>> TakeAsync(BusSubscription subscription, int count)
    {
        var list = new List<BusMessage>();
        using var cts = new CancellationTokenSource(Patience);
        await foreach (var message in subscription.ReadAllAsync(cts.Token))
        {
            list.Add(message);
            if (list.Count == count)
            {
                break;
            }
        }

        return list;
    }

    [Fact]
    public async Task Handshake_introduces_the_client()
    {
        var options = Options("procmond");
        options.Role = Role.Collector;
        options.Capabilities.Add("publish:events.process.#");
        await using var client = await BusClient.ConnectAsync(options);
        Assert.True(_agent.Hellos.TryDequeue(out var hello));
        Assert.Equal(1u, hello.ProtocolVersion);
        Assert.Equal("procmond", hello.ClientId);
        Assert.Equal(Role.Collector, hello.Role);
        Assert.Equal(["publish:events.process.#"], hello.Capabilities);
        Assert.StartsWith("fake-", client.ConnectionId, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Each_topic_stream_is_numbered_from_one_with_fresh_correlation_ids()
    {
        var clock = new FakeTimeProvider(new DateTimeOffset(2025, 1, 2, 3, 4, 5, TimeSpan.Zero));
        var options = Options();
        options.TimeProvider = clock;
        await using var client = await BusClient.ConnectAsync(options);
        foreach (var topic in new[] { "events.a", "events.b", "events.a", "events.a", "events.b" })
        {
            await client.PublishAsync(topic, "x"u8.ToArray());
        }

        await client.FlushAsync();
        var received = await ReceivedAsync(5);
        Assert.Equal([1UL, 1, 2, 3, 2], received.Select(p => p.Correlation.SequenceNumber));
        Assert.All(received, p =>
        {
            Assert.Matches("^[0-9a-f]{32}$", p.Correlation.CorrelationId);
            Assert.Equal(p.Correlation.CorrelationId, p.Correlation.RootCorrelationId);
            Assert.Equal("", p.Correlation.ParentCorrelationId);
            Assert.Equal((ulong)(clock.GetUtcNow() - DateTimeOffset.UnixEpoch).Ticks * 100, p.TimestampUnixNanos);
        });
        Assert.Equal(5, received.Select(p => p.Correlation.CorrelationId).Distinct().Count());
    }

    [Fact]
    public async Task Caller_metadata_is_sent_unchanged()
    {
        await using var client = await BusClient.ConnectAsync(Options());
        var when = new DateTimeOffset(2024, 6, 1, 0, 0, 0, TimeSpan.Zero);
        await client.PublishAsync("events.a", "1"u8.ToArray(), new PublishOptions { CorrelationId = "req-9", ParentCorrelationId = "req-1", SequenceNumber = 77, Timestamp = when, ContentType = "text/plain", WorkflowStage = "scan" });
        await client.PublishAsync("events.a", "2"u8.ToArray(), new PublishOptions { CorrelationId = "solo" });
        await client.FlushAsync();
        var received = await ReceivedAsync(2);
        var first = received[0];
        Assert.Equal("req-9", first.Correlation.CorrelationId);
        Assert.Equal("req-1", first.Correlation.ParentCorrelationId);
        Assert.Equal("", first.Correlation.RootCorrelationId);
        Assert.Equal(77UL, first.Correlation.SequenceNumber);
        Assert.Equal("scan", first.Correlation.WorkflowStage);
        Assert.Equal("text/plain", first.ContentType);
        Assert.Equal((ulong)(when - DateTimeOffset.UnixEpoch).Ticks * 100, first.TimestampUnixNanos);
        // An explicit sequence does not consume the topic's own numbering.
        Assert.Equal(1UL, received[1].Correlation.SequenceNumber);
        Assert.Equal("solo", received[1].Correlation.RootCorrelationId);
    }

    [Fact]
    public async Task Invalid_topics_and_patterns_fail_fast_with_the_reason()
    {
        await using var client = await BusClient.ConnectAsync(Options());
        var e = await Assert.ThrowsAsync<TopicFormatException>(async () => await client.PublishAsync("events.*", ReadOnlyMemory<byte>.Empty));
        Assert.Contains("'*'", e.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<TopicFormatException>(() => client.SubscribeAsync("events.#.x"));
        await Assert.ThrowsAsync<ArgumentException>(async () => await client.PublishAsync("events.a", ReadOnlyMemory<byte>.Empty, new PublishOptions { CorrelationId = new string('c', 129) }));
    }

    [Fact]
    public async Task Overlapping_subscriptions_each_get_every_message_in_order()
    {
        await using var subscriber = await BusClient.ConnectAsync(Options("sub"));
        await using var publisher = await BusClient.ConnectAsync(Options("pub"));
        var all = await subscriber.SubscribeAsync("events.#");
        var process = await subscriber.SubscribeAsync("events.process.+");
        for (var i = 0; i < 100; i++)
        {
            await publisher.PublishAsync(i % 2 == 0 ? "events.process.lifecycle" : "events.network.flow", Encoding.UTF8.GetBytes($"m{i}"));
        }

        await publisher.FlushAsync();
        var fromAll = await TakeAsync(all, 100);
        var fromProcess = await TakeAsync(process, 50);
        Assert.Equal(Enumerable.Range(0, 100).Select(i => $"m{i}"), fromAll.Select(m => Encoding.UTF8.GetString(m.Payload.Span)));
        Assert.Equal(Enumerable.Range(0, 50).Select(i => $"m{i * 2}"), fromProcess.Select(m => Encoding.UTF8.GetString(m.Payload.Span)));
        Assert.Equal(Enumerable.Range(1, 50).Select(i => (ulong)i), fromProcess.Select(m => m.Sequence));
        // One delivery per connection, shared by both subscriptions.
        Assert.Same(fromAll[0], fromProcess[0]);
    }

    [Fact]
    public async Task Publishes_are_coalesced_into_few_socket_writes()
    {
        await using var client = await BusClient.ConnectAsync(Options());
        for (var i = 0; i < 20_000; i++)
        {
            await client.PublishAsync("events.bench.x", new byte[64]);
        }

        await client.FlushAsync();
        await ReceivedAsync(20_000);
        Assert.True(_agent.FramesPerRead.Max() > 10, $"at most {_agent.FramesPerRead.Max()} frames arrived in one read");
    }

    [Fact]
    public async Task A_full_buffer_makes_publish_wait_and_nothing_is_lost()
    {
        var options = Options();
        options.MaxPendingBytes = 4096;
        await using var client = await BusClient.ConnectAsync(options);
        _agent.ReadGate.Reset();
        var published = 0;
        ValueTask blocked = default;
        for (; published < 2_000_000; published++)
        {
            var task = client.PublishAsync("events.a", new byte[100]);
            if (!task.IsCompleted)
            {
                blocked = task;
                published++;
                break;
            }
        }

        Assert.False(blocked.IsCompleted, "PublishAsync never had to wait for buffer space");
        _agent.ReadGate.Set();
        await blocked;
        await client.FlushAsync();
        var received = await ReceivedAsync(published);
        Assert.Equal(Enumerable.Range(1, published).Select(i => (ulong)i), received.Select(p => p.Correlation.SequenceNumber));
    }

    [Fact]
    public async Task Unsubscribe_ends_the_subscription()
    {
        await using var client = await BusClient.ConnectAsync(Options());
        var subscription = await client.SubscribeAsync("events.a");
        await subscription.UnsubscribeAsync();
        await subscription.Completion.WaitAsync(Patience);
        await client.PublishAsync("events.a", "late"u8.ToArray());
        await client.FlushAsync();
        Assert.Equal([0], _agent.SubscriptionCounts);
        Assert.False(subscription.Reader.TryRead(out _));
    }

    [Fact]
    public async Task Dropped_notices_are_counted_and_raised()
    {
        await using var client = await BusClient.ConnectAsync(Options());
        var raised = new TaskCompletionSource<BusDroppedEventArgs>(TaskCreationOptions.RunContinuationsAsynchronously);
        client.Dropped += (_, e) => raised.TrySetResult(e);
        _agent.Broadcast(new Envelope { Dropped = new Dropped { Count = 7, Total = 7, Reason = "buffer full" } });
        var args = await raised.Task.WaitAsync(Patience);
        Assert.Equal(new BusDroppedEventArgs(7, 7, 7, "buffer full"), args);
        Assert.Equal(7, client.DroppedTotal);
    }

    [Fact]
    public async Task After_a_lost_connection_the_client_reconnects_and_restores_its_subscriptions()
    {
        await using var client = await BusClient.ConnectAsync(Options("sub"));
        var first = await client.SubscribeAsync("events.a");
        var second = await client.SubscribeAsync("events.#");
        var reconnected = new TaskCompletionSource<BusReconnectedEventArgs>(TaskCreationOptions.RunContinuationsAsynchronously);
        client.Reconnected += (_, e) => reconnected.TrySetResult(e);
        var before = client.ConnectionId;

        _agent.DropConnections();
        var args = await reconnected.Task.WaitAsync(Patience);
        Assert.Equal(2, args.RestoredSubscriptions);
        Assert.NotEqual(before, client.ConnectionId);

        await using var publisher = await BusClient.ConnectAsync(Options("pub"));
        await publisher.PublishAsync("events.a", "after"u8.ToArray());
        await publisher.FlushAsync();
        Assert.Equal("after", Encoding.UTF8.GetString((await TakeAsync(first, 1))[0].Payload.Span));
        Assert.Equal("after", Encoding.UTF8.GetString((await TakeAsync(second, 1))[0].Payload.Span));
    }

    [Fact]
    public async Task A_missing_socket_is_reported_with_its_path()
    {
        var options = new BusClientOptions { SocketPath = Path.Combine(Path.GetTempPath(), "no-such-dir-de", "bus.sock") };
        var e = await Assert.ThrowsAsync<BusConnectionException>(() => BusClient.ConnectAsync(options));
        Assert.Contains("agent socket not found at " + options.SocketPath, e.Message, StringComparison.Ordinal);
        Assert.Contains("is daemoneye-agent running?", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Dispose_sends_what_is_buffered()
    {
        var client = await BusClient.ConnectAsync(Options());
        for (var i = 0; i < 1000; i++)
        {
            await client.PublishAsync("events.a", new byte[10]);
        }

        await client.DisposeAsync();
        Assert.Equal(1000, (await ReceivedAsync(1000)).Count);
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await client.PublishAsync("events.a", new byte[1]));
    }
}
