using DaemonEye.Protocol;
using DaemonEye.Protocol.V1;

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
    // reads were filled, so only a peer can see whether the client coalesced its writes.
    [Fact]
    public async Task Publishes_are_coalesced_into_few_socket_writes()
    {
        var (client, peer) = await ConnectAsync(new BusClientOptions { ClientId = "coalescing" });
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
}
