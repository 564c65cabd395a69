using System.Buffers.Binary;
using DaemonEye.Client;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// Durable topics and durable consumers through the real agent (docs/durability.md): a consumer
/// resumes after its last ack across a kill -9 of the agent, and a torn final record of the log is
/// detected, reported and truncated at start-up while the rest is served.
/// </summary>
public sealed class DurableEndToEndTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(120);

    // Relative: the agent's working directory is its own temp directory, which a restart reuses.
    internal static readonly Dictionary<string, string> Durable = new() { ["DAEMONEYE_DURABILITY__DIRECTORY"] = "durable" };

    private static BusClientOptions Options(AgentProcess agent, string id) => new() { SocketPath = agent.SocketPath, ClientId = id, AutoReconnect = false };

    internal static byte[] Payload(int i)
    {
        var bytes = new byte[64];
        BinaryPrimitives.WriteInt32LittleEndian(bytes, i);
        return bytes;
    }

    internal static int Index(BusMessage message) => BinaryPrimitives.ReadInt32LittleEndian(message.Payload.Span);

    internal static async Task PublishAlertsAsync(AgentProcess agent, int from, int count, CancellationToken cancellationToken)
    {
        await using var publisher = await BusClient.ConnectAsync(Options(agent, $"alerter-{from}"), cancellationToken);
        for (var i = from; i < from + count; i++)
        {
            await publisher.PublishAsync("events.alert.e2e", Payload(i), cancellationToken: cancellationToken);
        }

        // The Pong comes once every publish is routed, and a durable one is logged before it is routed.
        await publisher.FlushAsync(cancellationToken);
    }

    [Fact]
    public async Task A_consumer_that_acknowledged_40000_of_100000_gets_exactly_the_other_60000_after_kill_9()
    {
        using var patience = new CancellationTokenSource(Patience);
        var token = patience.Token;
        var first = await AgentProcess.StartAsync(Durable);
        AgentProcess? second = null;
        try
        {
            // The default local buffer (8,192): the SDK asks for no more unacknowledged messages than it holds
            // (Subscribe.max_in_flight), so the agent's send-ahead never fills it and the flush's Pong, behind
            // the deliveries, is read.
            await using (var consumer = await BusClient.ConnectAsync(Options(first, "siem-1"), token))
            {
                var disconnected = new TaskCompletionSource<BusDisconnectedEventArgs>(TaskCreationOptions.RunContinuationsAsynchronously);
                consumer.Disconnected += (_, e) => disconnected.TrySetResult(e);
                var subscription = await consumer.SubscribeDurableAsync("events.alert.#", "siem", DurableStartPosition.NewOnly, token);
                Assert.Equal(new BusClientOptions().SubscriptionBufferSize, subscription.MaxInFlight);
                await PublishAlertsAsync(first, 0, 100_000, token);

                for (var i = 0; i < 40_000; i++)
                {
                    var message = await subscription.Reader.ReadAsync(token);
                    Assert.Equal(i, Index(message));
                    subscription.Acknowledge(message);
                }

                await subscription.FlushAcksAsync(token);

                // kill -9 while the consumer is attached and has more delivered but unacknowledged, all of it
                // in its buffer: the reader never waited on it, so nothing was abandoned.
                await first.KillAgentOnlyAsync();
                var notice = await disconnected.Task.WaitAsync(token);
                Assert.Equal((0L, 0L, 0L), (notice.AbandonedMessages, subscription.Abandoned, subscription.Stalls));
            }

            second = await AgentProcess.StartAsync(Durable, reuse: first);
            await using var resumed = await BusClient.ConnectAsync(Options(second, "siem-2"), token);
            var again = await resumed.SubscribeDurableAsync("events.alert.#", "siem", DurableStartPosition.NewOnly, token);
            ulong last = 0;
            for (var i = 40_000; i < 100_000; i++)
            {
                var message = await again.Reader.ReadAsync(token);
                Assert.Equal(i, Index(message));
                Assert.True(message.Sequence > last, $"sequence {message.Sequence} after {last}");
                last = message.Sequence;
                again.Acknowledge(message);
            }

            // Exactly those: the next message is one published now, not a repeat.
            await PublishAlertsAsync(second, 100_000, 1, token);
            var marker = await again.Reader.ReadAsync(token);
            Assert.Equal(100_000, Index(marker));
            again.Acknowledge(marker);
            await again.FlushAcksAsync(token);

            var streams = await resumed.GetStreamsAsync(token);
            var siem = Assert.Single(streams.Consumers);
            Assert.Equal(("siem", 0UL, true), (siem.Name, siem.Lag, siem.Attached));
            Assert.Equal(100_001UL, streams.LastSequence);
            Assert.Equal(0UL, streams.TornTails);
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

    [Fact]
    public async Task A_torn_last_record_is_detected_reported_and_truncated_at_start_up_and_the_rest_is_served()
    {
        using var patience = new CancellationTokenSource(Patience);
        var token = patience.Token;
        var first = await AgentProcess.StartAsync(Durable);
        AgentProcess? second = null;
        try
        {
            await PublishAlertsAsync(first, 0, 10_000, token);
            await first.KillAgentOnlyAsync();

            // Cut the write-ahead log (where the last batches are after kill -9) in the middle of a frame.
            var wal = Path.Combine(first.Directory, "durable", "durable.db-wal");
            var length = new FileInfo(wal).Length;
            Assert.True(length > 32 + 4096 + 24, $"the WAL holds {length} bytes; expected the last batches in it");
            using (var file = new FileStream(wal, FileMode.Open, FileAccess.Write))
            {
                file.SetLength(length - 1000);
            }

            second = await AgentProcess.StartAsync(Durable, reuse: first);
            Assert.Contains("torn final record", second.Log, StringComparison.Ordinal);

            await using var client = await BusClient.ConnectAsync(Options(second, "siem-torn"), token);
            var streams = await client.GetStreamsAsync(token);
            Assert.Equal(1UL, streams.TornTails);
            var kept = streams.LastSequence;
            Assert.InRange(kept, 1UL, 10_000UL);

            // What survived is served from the start, in order, without a gap; then what is published now.
            // Acknowledged as read: more than the window (the SDK's buffer, 8,192) may have survived.
            var subscription = await client.SubscribeDurableAsync("events.alert.#", "after-tear", DurableStartPosition.FromSequence(1), token);
            for (var i = 0; i < (int)kept; i++)
            {
                var message = await subscription.Reader.ReadAsync(token);
                Assert.Equal((i, (ulong)i + 1), (Index(message), message.Sequence));
                subscription.Acknowledge(message);
            }

            await PublishAlertsAsync(second, 20_000, 1, token);
            var next = await subscription.Reader.ReadAsync(token);
            Assert.Equal((20_000, kept + 1), (Index(next), next.Sequence));
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
