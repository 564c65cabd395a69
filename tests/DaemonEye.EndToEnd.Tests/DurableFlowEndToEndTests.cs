using DaemonEye.Client;
using DaemonEye.Protocol.V1;
using static DaemonEye.EndToEnd.Tests.DurableEndToEndTests;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// Flow control of durable subscriptions (Subscribe.max_in_flight, docs/protocol.md): the agent sends a
/// durable consumer no more unacknowledged messages than its client asked for (and no more than
/// durability.max_ack_pending), so the SDK, which asks for its buffer's size, never stops reading its socket
/// for durable deliveries, and an ack flush (a Ping whose Pong comes behind the deliveries) always completes.
/// Real agent, real sockets; the window is read from the agent's StreamsReply.
/// </summary>
public sealed class DurableFlowEndToEndTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(120);

    private static async Task<(uint MaxInFlight, uint InFlight)> WindowAsync(BusClient client, string consumer, CancellationToken cancellationToken)
    {
        var streams = await client.GetStreamsAsync(cancellationToken);
        var info = Assert.Single(streams.Consumers, c => c.Name == consumer);
        return (info.MaxInFlight, info.InFlight);
    }

    [Fact]
    public async Task A_consumer_with_a_64_message_buffer_that_flushes_its_acks_every_10_messages_gets_a_20000_backlog_without_a_stall()
    {
        const int Buffer = 64;
        const int Backlog = 20_000;
        const int Batch = 10;
        using var patience = new CancellationTokenSource(Patience);
        var token = patience.Token;
        await using var agent = await AgentProcess.StartAsync(Durable);
        await PublishAlertsAsync(agent, 0, Backlog, token);

        await using var consumer = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = "slow-siem", AutoReconnect = false, SubscriptionBufferSize = Buffer }, token);
        var slowConsumer = 0;
        consumer.SlowConsumer += (_, _) => Interlocked.Increment(ref slowConsumer);
        var subscription = await consumer.SubscribeDurableAsync("events.alert.#", "slow", DurableStartPosition.FromSequence(1), token);
        Assert.Equal(Buffer, subscription.MaxInFlight);

        // Nothing acknowledged yet: the agent stops at the window. All 64 are here, and no 65th comes.
        var first = new List<BusMessage>(Buffer);
        for (var i = 0; i < Buffer; i++)
        {
            first.Add(await subscription.Reader.ReadAsync(token));
        }

        Assert.Equal((64u, 64u), await WindowAsync(consumer, "slow", token));
        Assert.False(subscription.Reader.TryRead(out _));

        // Then what an application naturally does: take a few, acknowledge them, wait for the acks to be
        // stored, read on. The agent is far ahead of it the whole time, and never more than 64 ahead.
        var next = 0;
        ulong last = 0;
        foreach (var message in first)
        {
            Assert.Equal(next++, Index(message));
            last = message.Sequence;
            subscription.Acknowledge(message);
        }

        await subscription.FlushAcksAsync(token);
        var batches = 0;
        while (next < Backlog)
        {
            for (var i = 0; i < Batch && next < Backlog; i++)
            {
                var message = await subscription.Reader.ReadAsync(token);
                Assert.Equal(next++, Index(message));
                Assert.True(message.Sequence > last, $"sequence {message.Sequence} after {last}");
                last = message.Sequence;
                subscription.Acknowledge(message);
            }

            await subscription.FlushAcksAsync(token);
            if (++batches % 250 == 0)
            {
                var (maxInFlight, inFlight) = await WindowAsync(consumer, "slow", token);
                Assert.Equal(64u, maxInFlight);
                Assert.InRange(inFlight, 0u, 64u);
            }
        }

        // Every message once, in order; all acknowledged, so nothing is in flight and nothing more comes.
        Assert.Equal((64u, 0u), await WindowAsync(consumer, "slow", token));
        Assert.False(subscription.Reader.TryRead(out _));
        await PublishAlertsAsync(agent, Backlog, 1, token);
        var marker = await subscription.Reader.ReadAsync(token);
        Assert.Equal(Backlog, Index(marker));

        // The reader never found the buffer full: no stall, no slow-consumer signal, nothing abandoned.
        Assert.Equal((0L, 0L, 0), (subscription.Stalls, subscription.Abandoned, Volatile.Read(ref slowConsumer)));
    }

    /// <summary>
    /// A raw client subscribes durably with <paramref name="maxInFlight"/> from the log's start and acknowledges
    /// nothing: returns the window the SubscribeAck granted, after checking that exactly that many messages came,
    /// that an ack of half of them let exactly that many more come, and that the agent reports the window full.
    /// </summary>
    private static async Task<uint> RawWindowAsync(AgentProcess agent, string consumer, uint maxInFlight)
    {
        await using var raw = await RawBus.ConnectAsync(agent.SocketPath, consumer, Role.Client);
        var id = raw.NextRequestId();
        await raw.SendAsync(new Envelope
        {
            RequestId = id,
            Subscribe = new Subscribe { Pattern = "events.alert.#", DurableConsumer = consumer, Start = DurableStart.FromSequence, StartSequence = 1, MaxInFlight = maxInFlight },
        });
        var ack = await raw.ReadAsync();
        Assert.Equal((id, Envelope.BodyOneofCase.SubscribeAck), (ack.RequestId, ack.BodyCase));
        var window = ack.SubscribeAck.MaxInFlight;

        ulong expected = 1;
        async Task ReceiveAsync(uint count)
        {
            for (var i = 0; i < count; i++)
            {
                var frame = await raw.ReadAsync();
                Assert.Equal((Envelope.BodyOneofCase.Deliver, expected++), (frame.BodyCase, frame.Deliver.Sequence));
            }
        }

        async Task ExpectFullAsync()
        {
            // Frames before the Pong: only the StreamsReply, no delivery beyond the window.
            var frames = await raw.SendAndSettleAsync(new Envelope { StreamsRequest = new StreamsRequest() });
            var info = Assert.Single(Assert.Single(frames).StreamsReply.Consumers, c => c.Name == consumer);
            Assert.Equal((window, window, true), (info.MaxInFlight, info.InFlight, info.Attached));
        }

        await ReceiveAsync(window);
        await ExpectFullAsync();

        await raw.SendAsync(new Envelope { DurableAck = new DurableAck { SubscriptionId = ack.SubscribeAck.SubscriptionId, Sequence = window / 2 } });
        await ReceiveAsync(window / 2);
        await ExpectFullAsync();
        return window;
    }

    [Fact]
    public async Task The_agent_sends_a_durable_consumer_at_most_the_smaller_of_max_in_flight_and_max_ack_pending_and_0_asks_for_max_ack_pending()
    {
        using var patience = new CancellationTokenSource(Patience);
        var environment = new Dictionary<string, string>(Durable) { ["DAEMONEYE_DURABILITY__MAX_ACK_PENDING"] = "100" };
        await using var agent = await AgentProcess.StartAsync(environment);
        await PublishAlertsAsync(agent, 0, 1_000, patience.Token);

        // A client that does not set the field (0) gets what every client got before it existed.
        Assert.Equal(100u, await RawWindowAsync(agent, "raw-default", maxInFlight: 0));
        Assert.Equal(30u, await RawWindowAsync(agent, "raw-small", maxInFlight: 30));
        Assert.Equal(1u, await RawWindowAsync(agent, "raw-one", maxInFlight: 1));
        Assert.Equal(100u, await RawWindowAsync(agent, "raw-large", maxInFlight: 5_000));

        await using var raw = await RawBus.ConnectAsync(agent.SocketPath, "raw-refused", Role.Client);
        var refused = await raw.SubscribeAsync(new Subscribe { Pattern = "events.alert.#", DurableConsumer = "raw-refused", MaxInFlight = 1_000_001 });
        Assert.Equal((Envelope.BodyOneofCase.Error, ErrorCode.InvalidMessage, false), (refused.BodyCase, refused.Error.Code, refused.Error.Fatal));
        Assert.Contains("max_in_flight is 1000001; allowed: 0 (this agent's durability.max_ack_pending, 100) or 1 to 1000000", refused.Error.Message, StringComparison.Ordinal);

        // Not durable: the field is ignored, whatever its value.
        var live = await raw.SubscribeAsync(new Subscribe { Pattern = "events.alert.#", MaxInFlight = 1_000_001 });
        Assert.Equal((Envelope.BodyOneofCase.SubscribeAck, 0u), (live.BodyCase, live.SubscribeAck.MaxInFlight));
    }

    [Fact]
    public async Task A_consumer_that_acknowledges_without_flushing_is_not_stopped_by_an_agent_window_smaller_than_its_ack_batch()
    {
        using var patience = new CancellationTokenSource(Patience);
        var token = patience.Token;
        var environment = new Dictionary<string, string>(Durable) { ["DAEMONEYE_DURABILITY__MAX_ACK_PENDING"] = "100" };
        await using var agent = await AgentProcess.StartAsync(environment);
        await PublishAlertsAsync(agent, 0, 1_000, token);

        // The SDK's buffer (8,192) and ack batch (256) are both larger than the agent's window: the agent grants
        // 100, and the SDK acknowledges every 50 so that delivery never waits for a batch that cannot fill.
        await using var consumer = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = "unflushed", AutoReconnect = false }, token);
        var subscription = await consumer.SubscribeDurableAsync("events.alert.#", new DurableConsumerOptions("unflushed", DurableStartPosition.FromSequence(1), AckBatchSize: 256), token);
        Assert.Equal(100, subscription.MaxInFlight);
        for (var i = 0; i < 1_000; i++)
        {
            var message = await subscription.Reader.ReadAsync(token);
            Assert.Equal(i, Index(message));
            subscription.Acknowledge(message);
        }

        await subscription.FlushAcksAsync(token);
        var unflushed = Assert.Single((await consumer.GetStreamsAsync(token)).Consumers);
        Assert.Equal((0UL, 100u, 0u), (unflushed.Lag, unflushed.MaxInFlight, unflushed.InFlight));
    }

    [Fact]
    public async Task After_a_reconnect_a_durable_subscription_discards_what_its_buffer_held_and_gets_it_again_once_in_order()
    {
        using var patience = new CancellationTokenSource(Patience);
        var token = patience.Token;
        var first = await AgentProcess.StartAsync(Durable);
        AgentProcess? second = null;
        try
        {
            var options = new BusClientOptions { SocketPath = first.SocketPath, ClientId = "siem-reconnect", SubscriptionBufferSize = 64, ReconnectMaxDelay = TimeSpan.FromSeconds(1) };
            await using var consumer = await BusClient.ConnectAsync(options, token);
            var reconnected = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            consumer.Reconnected += (_, _) => reconnected.TrySetResult();
            var subscription = await consumer.SubscribeDurableAsync("events.alert.#", "siem-reconnect", DurableStartPosition.NewOnly, token);
            await PublishAlertsAsync(first, 0, 1_000, token);
            for (var i = 0; i < 10; i++)
            {
                var message = await subscription.Reader.ReadAsync(token);
                Assert.Equal(i, Index(message));
                subscription.Acknowledge(message);
            }

            await subscription.FlushAcksAsync(token);

            // The buffer holds more, delivered and unacknowledged, when the agent dies.
            Assert.True(await subscription.Reader.WaitToReadAsync(token));
            await first.KillAgentOnlyAsync();
            second = await AgentProcess.StartAsync(Durable, reuse: first);
            await reconnected.Task.WaitAsync(token);

            // The restore discarded them (counted), and the new connection delivers them again: each once.
            Assert.True(subscription.Abandoned >= 1, $"abandoned {subscription.Abandoned}");
            Assert.Equal(subscription.Abandoned, consumer.AbandonedMessages);
            for (var i = 10; i < 1_000; i++)
            {
                var message = await subscription.Reader.ReadAsync(token);
                Assert.Equal(i, Index(message));
                subscription.Acknowledge(message);
            }

            await subscription.FlushAcksAsync(token);
            Assert.False(subscription.Reader.TryRead(out _));
            Assert.Equal(0L, subscription.Stalls);
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
