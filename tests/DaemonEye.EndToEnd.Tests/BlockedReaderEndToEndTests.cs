using System.Buffers.Binary;
using DaemonEye.Client;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// A client whose reader waits on a full subscription buffer (the consumer reads nothing) still
/// notices the agent's kill -9: the connection ends, Disconnected is raised with the deliveries it
/// abandons counted, what was buffered stays readable, and disposing does not hang. For a buffered
/// and a handler subscription, each with a real agent killed with SIGKILL. A durable subscription's
/// buffer never fills (the agent sends no more unacknowledged messages than it holds): its reader
/// never waits, and after the kill everything unacknowledged comes again.
/// </summary>
public sealed class BlockedReaderEndToEndTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private static readonly Dictionary<string, string> Durable = new() { ["DAEMONEYE_DURABILITY__DIRECTORY"] = "durable" };

    private const int Capacity = 4;
    private const int Published = 5_000;

    private static BusClientOptions Options(AgentProcess agent, string id) => new()
    {
        SocketPath = agent.SocketPath,
        ClientId = id,
        AutoReconnect = false,
        SubscriptionBufferSize = Capacity,
    };

    private static byte[] Payload(int i)
    {
        var bytes = new byte[64];
        BinaryPrimitives.WriteInt32LittleEndian(bytes, i);
        return bytes;
    }

    private static int Index(BusMessage message) => BinaryPrimitives.ReadInt32LittleEndian(message.Payload.Span);

    private static async Task PublishAsync(AgentProcess agent, string topic, CancellationToken cancellationToken)
    {
        await using var publisher = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = "blocked-publisher", AutoReconnect = false }, cancellationToken);
        for (var i = 0; i < Published; i++)
        {
            await publisher.PublishAsync(topic, Payload(i), cancellationToken: cancellationToken);
        }

        // The Pong comes once every publish is routed (and a durable one logged).
        await publisher.FlushAsync(cancellationToken);
    }

    /// <summary>Completes when the client's reader finds a subscription full and starts waiting on it (the SDK's slow-consumer signal).</summary>
    private static Task<BusSlowConsumerEventArgs> Stalled(BusClient client)
    {
        var seen = new TaskCompletionSource<BusSlowConsumerEventArgs>(TaskCreationOptions.RunContinuationsAsynchronously);
        client.SlowConsumer += (_, e) => seen.TrySetResult(e);
        return seen.Task;
    }

    /// <summary>Waits for the stall and checks what it reports: this subscription, its full buffer, the first stall.</summary>
    private static async Task WaitFullAsync(Task<BusSlowConsumerEventArgs> stalled, BusSubscription subscription, CancellationToken cancellationToken)
    {
        var stall = await stalled.WaitAsync(cancellationToken);
        Assert.Equal((subscription.Pattern, subscription.Id, Capacity, 1L), (stall.Pattern, stall.SubscriptionId, stall.Capacity, stall.Stalls));
        Assert.Equal((Capacity, 1L), (subscription.Reader.Count, subscription.Stalls));
    }

    /// <summary>Kills the agent and checks what the blocked client must do: notice, count, keep what it buffered, dispose.</summary>
    private static async Task KillAndCheckAsync(AgentProcess agent, BusClient consumer, BusSubscription subscription, Task<BusDisconnectedEventArgs> disconnected, CancellationToken token)
    {
        await agent.KillAgentOnlyAsync();

        // Noticed although the consumer reads nothing: the reader stopped waiting on the full buffer.
        var notice = await disconnected.WaitAsync(token);
        Assert.True(notice.AbandonedMessages >= 1, $"the delivery the reader waited with was not counted ({notice.AbandonedMessages})");
        Assert.Equal(notice.AbandonedMessages, consumer.AbandonedMessages);
        Assert.Equal(notice.AbandonedMessages, subscription.Abandoned);

        // What was buffered before the end is still there, in order; then the subscription reports the loss.
        for (var i = 0; i < Capacity; i++)
        {
            Assert.Equal(i, Index(await subscription.Reader.ReadAsync(token)));
        }

        await Assert.ThrowsAsync<BusConnectionException>(() => subscription.Completion.WaitAsync(token));
        Assert.InRange(Capacity + subscription.Abandoned, Capacity + 1, Published);

        await subscription.DisposeAsync().AsTask().WaitAsync(token);
        await consumer.DisposeAsync().AsTask().WaitAsync(token);
    }

    private static Task<BusDisconnectedEventArgs> Disconnected(BusClient client)
    {
        var seen = new TaskCompletionSource<BusDisconnectedEventArgs>(TaskCreationOptions.RunContinuationsAsynchronously);
        client.Disconnected += (_, e) => seen.TrySetResult(e);
        return seen.Task;
    }

    [Fact]
    public async Task A_reader_waiting_on_a_full_subscription_notices_kill_9_and_counts_what_it_abandons()
    {
        using var patience = new CancellationTokenSource(Patience);
        var token = patience.Token;
        await using var agent = await AgentProcess.StartAsync();
        var consumer = await BusClient.ConnectAsync(Options(agent, "blocked-consumer"), token);
        var disconnected = Disconnected(consumer);
        var stalled = Stalled(consumer);
        var subscription = await consumer.SubscribeAsync("events.blocked.#", token);

        // A second client with only a handler subscription: its reader never waits, and it notices too.
        await using var watcher = await BusClient.ConnectAsync(Options(agent, "blocked-watcher"), token);
        var watcherDisconnected = Disconnected(watcher);
        var handled = 0;
        await using var handler = await watcher.SubscribeAsync("events.blocked.#", (in BusDelivery _) => Interlocked.Increment(ref handled), token);

        await PublishAsync(agent, "events.blocked.test", token);
        await WaitFullAsync(stalled, subscription, token);
        await KillAndCheckAsync(agent, consumer, subscription, disconnected, token);

        var watcherNotice = await watcherDisconnected.WaitAsync(token);
        Assert.Equal(0, watcherNotice.AbandonedMessages);
        Assert.InRange(Volatile.Read(ref handled), 1, Published);
    }

    [Fact]
    public async Task A_handler_subscription_beside_a_full_one_is_still_served_until_the_end_after_kill_9()
    {
        using var patience = new CancellationTokenSource(Patience);
        var token = patience.Token;
        await using var agent = await AgentProcess.StartAsync();
        var consumer = await BusClient.ConnectAsync(Options(agent, "blocked-mixed"), token);
        var disconnected = Disconnected(consumer);
        var stalled = Stalled(consumer);
        var subscription = await consumer.SubscribeAsync("events.blocked.#", token);
        var handled = new List<int>();
        await using var handler = await consumer.SubscribeAsync("events.blocked.#", (in BusDelivery delivery) =>
        {
            lock (handled)
            {
                handled.Add(BinaryPrimitives.ReadInt32LittleEndian(delivery.Payload));
            }
        }, token);

        await PublishAsync(agent, "events.blocked.mixed", token);
        await WaitFullAsync(stalled, subscription, token);
        await KillAndCheckAsync(agent, consumer, subscription, disconnected, token);

        // The handler saw, in order, every message the agent wrote before it died: at least those the
        // buffered subscription holds or abandoned, since each delivery carried both ids.
        lock (handled)
        {
            Assert.Equal(Enumerable.Range(0, handled.Count), handled);
            Assert.True(handled.Count >= Capacity + subscription.Abandoned, $"handler saw {handled.Count}; buffered {Capacity} + abandoned {subscription.Abandoned}");
        }
    }

    [Fact]
    public async Task A_durable_consumer_is_sent_no_more_than_its_buffer_holds_so_its_reader_never_waits_and_after_kill_9_gets_it_all_again()
    {
        using var patience = new CancellationTokenSource(Patience * 2);
        var token = patience.Token;
        var first = await AgentProcess.StartAsync(Durable);
        AgentProcess? second = null;
        try
        {
            var consumer = await BusClient.ConnectAsync(Options(first, "blocked-durable"), token);
            var disconnected = Disconnected(consumer);
            var stalled = Stalled(consumer);
            var subscription = await consumer.SubscribeDurableAsync("events.alert.#", "blocked", DurableStartPosition.NewOnly, token);
            Assert.Equal(Capacity, subscription.MaxInFlight);
            await PublishAsync(first, "events.alert.blocked", token);

            // The consumer acknowledges nothing: the agent sends what the buffer holds and stops (Subscribe.max_in_flight),
            // so the reader keeps reading the socket. The StreamsReply comes behind those deliveries.
            for (var i = 0; i < Capacity; i++)
            {
                Assert.Equal(i, Index(await subscription.Reader.ReadAsync(token)));
            }

            var streams = await consumer.GetStreamsAsync(token);
            var blocked = Assert.Single(streams.Consumers);
            Assert.Equal(((uint)Capacity, (uint)Capacity), (blocked.MaxInFlight, blocked.InFlight));
            Assert.False(subscription.Reader.TryRead(out _));

            await first.KillAgentOnlyAsync();
            var notice = await disconnected.WaitAsync(token);
            Assert.Equal((0L, 0L, 0L), (notice.AbandonedMessages, subscription.Abandoned, subscription.Stalls));
            Assert.False(stalled.IsCompleted);
            await Assert.ThrowsAsync<BusConnectionException>(() => subscription.Completion.WaitAsync(token));
            await consumer.DisposeAsync().AsTask().WaitAsync(token);

            // Nothing was acknowledged: the consumer resumes at the first message.
            second = await AgentProcess.StartAsync(Durable, reuse: first);
            await using var resumed = await BusClient.ConnectAsync(Options(second, "blocked-durable-2"), token);
            var again = await resumed.SubscribeDurableAsync("events.alert.#", "blocked", DurableStartPosition.NewOnly, token);
            for (var i = 0; i < Capacity; i++)
            {
                Assert.Equal(i, Index(await again.Reader.ReadAsync(token)));
            }
        }
        finally
        {
            if (second is not null)
            {
                await second.DisposeAsync(keepDirectory: true);
            }

            await first.DisposeAsync();
        }
    }
}
