using System.Text;
using DaemonEye.Client.Internal;
using DaemonEye.Protocol;
using DaemonEye.Protocol.V1;
using Google.Protobuf;
using Microsoft.Extensions.Time.Testing;

namespace DaemonEye.Client.Tests;

/// <summary>
/// SDK behaviour that needs the other end of the socket to misbehave on cue, which the real agent
/// never does: it always reads its clients as fast as it can. Everything else about the client
/// runs against the real agent in DaemonEye.EndToEnd.Tests (BusClientEndToEndTests, BusEndToEndTests).
/// </summary>
public sealed class BusClientPeerTests : IAsyncLifetime
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);
    private readonly RawPeer _peer = new();
    private readonly CancellationTokenSource _patience = new(Patience);

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        await _peer.DisposeAsync();
        _patience.Dispose();
    }

    private async Task<(BusClient Client, PeerConnection Peer)> ConnectAsync(BusClientOptions options)
    {
        options.SocketPath = _peer.SocketPath;
        options.AutoReconnect = false;
        var accepted = _peer.AcceptAsync(_patience.Token);
        var client = await BusClient.ConnectAsync(options, _patience.Token);
        return (client, await accepted);
    }

    // The peer: reads the socket only when the test says so. The real agent cannot be told to stop
    // reading one client, so its socket buffer never fills on cue.
    [Fact]
    public async Task A_full_buffer_makes_publish_wait_and_nothing_is_lost()
    {
        var (client, peer) = await ConnectAsync(new BusClientOptions { ClientId = "backpressure", MaxPendingBytes = 4096 });
        await using var _ = client;
        using var __ = peer;

        // Nobody reads: the kernel's socket buffer fills, then the client's 4 KiB, then PublishAsync must wait.
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
        var reading = peer.ReadAsync(Envelope.BodyOneofCase.Publish, published, _patience.Token);
        await blocked.AsTask().WaitAsync(Patience);
        var received = await reading;
        Assert.Equal(Enumerable.Range(1, published).Select(i => (ulong)i), received.Select(e => e.Publish.Correlation.SequenceNumber));
    }

    // The peer: counts how many frames each socket read brings. The agent does not expose how its
    // reads were filled, so only a peer can see whether the client coalesced its writes. The clock
    // stands still: every publish comes less than CommandWriter.DirectWindow after the one before.
    [Fact]
    public async Task Under_load_publishes_are_coalesced_into_few_socket_writes()
    {
        var (client, peer) = await ConnectAsync(new BusClientOptions { ClientId = "coalescing", TimeProvider = new FakeTimeProvider(), DisposeTimeout = TimeSpan.Zero });
        await using var _ = client;
        using var __ = peer;
        const int Count = 20_000;
        var reading = Task.Run(() => peer.ReadAsync(Envelope.BodyOneofCase.Publish, Count, _patience.Token));
        for (var i = 0; i < Count; i++)
        {
            await client.PublishAsync("events.bench.x", new byte[64]);
        }

        Assert.Equal(Count, (await reading.WaitAsync(Patience)).Count);
        Assert.True(peer.FramesPerRead.Max() > 10, $"at most {peer.FramesPerRead.Max()} frames arrived in one read");
        Assert.True(client.Writer.DirectSends <= CommandWriter.DirectBurst, $"{client.Writer.DirectSends} publishes were sent one syscall each");
    }

    // The peer: looks at its socket the moment PublishAsync returns. Only a send made on the
    // caller's thread puts the frame there by then; the agent cannot tell which thread sent.
    [Fact]
    public async Task An_idle_client_sends_each_publish_before_PublishAsync_returns()
    {
        var clock = new FakeTimeProvider();
        var (client, peer) = await ConnectAsync(new BusClientOptions { ClientId = "direct", TimeProvider = clock, DisposeTimeout = TimeSpan.Zero });
        await using var _ = client;
        using var __ = peer;
        Assert.True(SpinWait.SpinUntil(() => client.Writer.IsParked, Patience), "the writer loop never parked");

        const int Count = 2 * CommandWriter.DirectBurst;
        for (var i = 1; i <= Count; i++)
        {
            clock.Advance(CommandWriter.DirectWindow); // idle since the last one
            Assert.True(IsDone(client.PublishAsync("events.direct", new byte[8])));
            Assert.True(peer.Socket.Available > 0, $"publish {i} was not in the socket when PublishAsync returned");
            Assert.Equal((ulong)i, (await peer.ReadAsync(_patience.Token)).Publish.Correlation.SequenceNumber);
        }

        Assert.Equal(Count, client.Writer.DirectSends);
        Assert.Equal(0, client.Writer.WriterSends);
    }

    // The peer: sends deliveries for a subscription id it acknowledged itself, in one write, and a
    // Ping behind them as a barrier. The agent cannot be made to put several deliveries in one write.
    [Fact]
    public async Task A_handler_subscription_is_called_on_the_reader_and_what_it_publishes_leaves_after_the_read()
    {
        var (client, peer) = await ConnectAsync(new BusClientOptions { ClientId = "handler", DisposeTimeout = TimeSpan.Zero });
        await using var _ = client;
        using var __ = peer;
        var seen = new List<(ulong Sequence, string Topic, string Payload, bool OnReader)>();
        var subscribing = client.SubscribeAsync("events.h.#", (in BusDelivery d) =>
        {
            seen.Add((d.Sequence, d.Topic, Encoding.UTF8.GetString(d.Payload), client.OnReaderThread));
            if (d.Sequence == 2)
            {
                throw new InvalidOperationException("a bug in the handler");
            }

            Assert.True(IsDone(client.PublishAsync("events.reply", d.Payload.ToArray())));
        });
        var subscribe = await peer.ReadAsync(_patience.Token);
        await peer.SendAsync(new Envelope { RequestId = subscribe.RequestId, SubscribeAck = new SubscribeAck { SubscriptionId = 7, Pattern = "events.h.#" } }, _patience.Token);
        var subscription = await subscribing.WaitAsync(Patience);

        await peer.SendTogetherAsync(Enumerable.Range(1, 3).Select(i => Deliver(7, (ulong)i, $"m{i}")), _patience.Token);
        var replies = await peer.ReadAsync(Envelope.BodyOneofCase.Publish, 2, _patience.Token);

        Assert.Equal(new[] { (1UL, "events.h.x", "m1", true), (2UL, "events.h.x", "m2", true), (3UL, "events.h.x", "m3", true) }, seen);
        Assert.Equal(["m1", "m3"], replies.Select(r => r.Publish.Payload.ToStringUtf8())); // the throw lost only its own reply
        Assert.Equal(2, peer.FramesPerRead[^1]); // corked on the reader: both replies in one send
        Assert.False(subscription.Reader.TryRead(out var buffered), $"a handler subscription buffered {buffered?.Topic}");

        // After the UnsubscribeAck, a delivery for the old id reaches nobody (the Pong after it is the barrier).
        var unsubscribing = subscription.UnsubscribeAsync().AsTask();
        var unsubscribe = await peer.ReadAsync(_patience.Token);
        await peer.SendAsync(new Envelope { RequestId = unsubscribe.RequestId, UnsubscribeAck = new UnsubscribeAck { SubscriptionId = 7 } }, _patience.Token);
        await unsubscribing.WaitAsync(Patience);
        await peer.SendTogetherAsync([Deliver(7, 4, "m4"), new Envelope { RequestId = 99, Ping = new Ping { Nonce = 99 } }], _patience.Token);
        Assert.Single(await peer.ReadAsync(Envelope.BodyOneofCase.Pong, 1, _patience.Token));
        Assert.Equal(3, seen.Count);

        static Envelope Deliver(uint id, ulong sequence, string payload) => new()
        {
            Deliver = new Deliver { SubscriptionIds = { id }, Sequence = sequence, Message = new Publish { Topic = "events.h.x", Payload = ByteString.CopyFromUtf8(payload) } },
        };
    }

    // The peer: answers two calls in one write, so the client's reader meets both answers in one
    // read. The agent's writes cannot be arranged like that on cue.
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task CompleteCallsOnReader_decides_where_the_code_after_a_call_runs_and_a_call_made_there_is_sent(bool onReader)
    {
        var (client, peer) = await ConnectAsync(new BusClientOptions { ClientId = "completions", CompleteCallsOnReader = onReader, DefaultRpcTimeout = Patience });
        await using var _ = client;
        using var __ = peer;
        var first = client.CallAsync("c", RpcOperation.HealthCheck);
        var second = client.CallAsync("c", RpcOperation.HealthCheck);
        var requests = await peer.ReadAsync(Envelope.BodyOneofCase.RpcRequest, 2, _patience.Token);

        // What the code right after the first call sees: which thread it is on, whether the second
        // answer (already in the same read) has been handled yet; and it makes a third call.
        var afterFirst = first.ContinueWith(
            _ => (OnReader: client.OnReaderThread, SecondDone: second.IsCompleted, Third: client.CallAsync("c", RpcOperation.HealthCheck)),
            CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        await peer.SendTogetherAsync(requests.Select(Answer), _patience.Token);
        var seen = await afterFirst.WaitAsync(Patience);

        Assert.Equal(onReader, seen.OnReader);
        if (onReader)
        {
            // The reader runs that code before it handles the next frame of the same read.
            Assert.False(seen.SecondDone);
        }

        // The third call leaves (on the reader: with what the read produced, once the read is done).
        var third = Assert.Single(await peer.ReadAsync(Envelope.BodyOneofCase.RpcRequest, 1, _patience.Token));
        await peer.SendAsync(Answer(third), _patience.Token);
        Assert.Equal(RpcStatus.Ok, (await seen.Third.WaitAsync(Patience)).Status);
        Assert.Equal(RpcStatus.Ok, (await second.WaitAsync(Patience)).Status);

        static Envelope Answer(Envelope request) => new() { RpcResponse = new RpcResponse { Correlation = request.RpcRequest.Correlation, Status = RpcStatus.Ok } };
    }

    /// <summary>Consumes a ValueTask that should have completed synchronously; true when it had.</summary>
    private static bool IsDone(ValueTask task)
    {
        var done = task.IsCompletedSuccessfully;
        task.AsTask().GetAwaiter().GetResult();
        return done;
    }
}
