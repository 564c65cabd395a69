using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using DaemonEye.Client;
using DaemonEye.Protocol;
using DaemonEye.Protocol.V1;
using Google.Protobuf;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>The SDK, raw sockets and the CLI against the real agent over its real socket.</summary>
public sealed class BusEndToEndTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    private static BusClientOptions Options(AgentProcess agent, string id) => new()
    {
        SocketPath = agent.SocketPath,
        ClientId = id,
        ReconnectMinDelay = TimeSpan.FromMilliseconds(50),
        ReconnectMaxDelay = TimeSpan.FromMilliseconds(500),
    };

    /// <summary>Everything buffered for <paramref name="subscription"/> once its client's Ping barrier has passed.</summary>
    private static async Task<List<BusMessage>> DrainAsync(BusClient client, BusSubscription subscription)
    {
        await client.FlushAsync().WaitAsync(Patience);
        var list = new List<BusMessage>();
        while (subscription.Reader.TryRead(out var message))
        {
            list.Add(message);
        }

        return list;
    }

    private static string Text(BusMessage message) => Encoding.UTF8.GetString(message.Payload.Span);

    [Fact]
    public async Task Overlapping_subscribers_each_get_every_matching_message_once_and_in_order()
    {
        await using var agent = await AgentProcess.StartAsync();
        await using var first = await BusClient.ConnectAsync(Options(agent, "first"));
        await using var second = await BusClient.ConnectAsync(Options(agent, "second"));
        await using var publisher = await BusClient.ConnectAsync(Options(agent, "publisher"));
        var process = await first.SubscribeAsync("events.process.#");
        var lifecycle = await second.SubscribeAsync("events.+.lifecycle");
        var everything = await second.SubscribeAsync("events.#");

        string[] topics = ["events.process.lifecycle", "events.process.tree", "events.network.lifecycle"];
        const int Count = 600;
        for (var i = 0; i < Count; i++)
        {
            await publisher.PublishAsync(topics[i % 3], Encoding.UTF8.GetBytes($"m{i}"));
        }

        await publisher.FlushAsync().WaitAsync(Patience);
        var fromProcess = await DrainAsync(first, process);
        var fromEverything = await DrainAsync(second, everything);
        var fromLifecycle = await DrainAsync(second, lifecycle);

        // Order is per topic (each topic is its own stream); across topics it is not defined.
        AssertPerTopic(Enumerable.Range(0, Count).Where(i => i % 3 != 2), fromProcess);
        AssertPerTopic(Enumerable.Range(0, Count), fromEverything);
        AssertPerTopic(Enumerable.Range(0, Count).Where(i => i % 3 != 1), fromLifecycle);

        void AssertPerTopic(IEnumerable<int> expected, List<BusMessage> actual)
        {
            Assert.Equal(expected.Count(), actual.Count);
            foreach (var topic in topics)
            {
                Assert.Equal(
                    expected.Where(i => topics[i % 3] == topic).Select(i => $"m{i}"),
                    actual.Where(m => m.Topic == topic).Select(Text));
            }
        }

        // Per topic: broker sequence and the publisher's sequence both run 1, 2, 3, ...
        foreach (var group in fromEverything.GroupBy(m => m.Topic))
        {
            Assert.Equal(Enumerable.Range(1, Count / 3).Select(i => (ulong)i), group.Select(m => m.Sequence));
            Assert.Equal(Enumerable.Range(1, Count / 3).Select(i => (ulong)i), group.Select(m => m.Correlation.SequenceNumber));
        }

        // A message matching two subscriptions of one connection arrives once, shared by both.
        var shared = fromEverything.Where(m => m.Topic.EndsWith(".lifecycle", StringComparison.Ordinal)).ToHashSet(ReferenceEqualityComparer.Instance);
        Assert.All(fromLifecycle, m => Assert.Contains(m, shared));
    }

    [Fact]
    public async Task Unsubscribe_stops_delivery()
    {
        await using var agent = await AgentProcess.StartAsync();
        await using var subscriber = await BusClient.ConnectAsync(Options(agent, "subscriber"));
        await using var publisher = await BusClient.ConnectAsync(Options(agent, "publisher"));
        var leaving = await subscriber.SubscribeAsync("events.a");
        var staying = await subscriber.SubscribeAsync("events.a");

        await publisher.PublishAsync("events.a", "before"u8.ToArray());
        await publisher.FlushAsync().WaitAsync(Patience);
        Assert.Equal(["before"], (await DrainAsync(subscriber, leaving)).Select(Text));

        // The agent's own subscribers (event rules, the MQTT listener) count too: compare before and after.
        var before = await IpcProbe.SendAsync(agent.IpcSocketPath, new Protocol.Ipc.V1.IpcRequest { Status = new Protocol.Ipc.V1.StatusRequest() });
        await leaving.UnsubscribeAsync().AsTask().WaitAsync(Patience);
        var status = await IpcProbe.SendAsync(agent.IpcSocketPath, new Protocol.Ipc.V1.IpcRequest { Status = new Protocol.Ipc.V1.StatusRequest() });
        Assert.Equal(before.Status.Broker.Subscriptions - 1, status.Status.Broker.Subscriptions); // "leaving" is gone from the agent
        for (var i = 0; i < 5; i++)
        {
            await publisher.PublishAsync("events.a", "after"u8.ToArray());
        }

        await publisher.FlushAsync().WaitAsync(Patience);
        Assert.Equal(["before", "after", "after", "after", "after", "after"], (await DrainAsync(subscriber, staying)).Select(Text));
        Assert.Empty(await DrainAsync(subscriber, leaving));
        Assert.True(leaving.Completion.IsCompleted);
    }

    public static TheoryData<string, byte[], ErrorCode> Abuse => new()
    {
        { "garbage", Frame([0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x42]), ErrorCode.MalformedFrame },
        { "publish before hello", Framing.ToFrame(new Envelope { Publish = new Publish { Topic = "events.a" } }), ErrorCode.HandshakeRequired },
        { "oversized length prefix", [0xFF, 0xFF, 0xFF, 0xF0, 1, 2, 3], ErrorCode.FrameTooLarge },
        { "wrong protocol version", Framing.ToFrame(new Envelope { RequestId = 1, Hello = new Hello { ProtocolVersion = 2, ClientId = "v2" } }), ErrorCode.UnsupportedVersion },
        { "truncated frame", Framing.ToFrame(new Envelope { RequestId = 1, Hello = new Hello { ProtocolVersion = 1, ClientId = "truncated" } }).Concat(new byte[] { 0, 0, 0, 100, 1, 2, 3 }).ToArray(), ErrorCode.TruncatedFrame },
    };

    private static byte[] Frame(byte[] body)
    {
        var frame = new byte[4 + body.Length];
        BinaryPrimitives.WriteUInt32BigEndian(frame, (uint)body.Length);
        body.CopyTo(frame, 4);
        return frame;
    }

    [Theory]
    [MemberData(nameof(Abuse))]
    public async Task A_misbehaving_client_gets_a_fatal_error_and_is_closed_while_others_lose_nothing(string what, byte[] bytes, ErrorCode expected)
    {
        await using var agent = await AgentProcess.StartAsync();
        await using var subscriber = await BusClient.ConnectAsync(Options(agent, "subscriber"));
        await using var publisher = await BusClient.ConnectAsync(Options(agent, "publisher"));
        var subscription = await subscriber.SubscribeAsync("events.stream");
        var sent = 0;
        async Task PublishSome(int n)
        {
            for (var i = 0; i < n; i++, sent++)
            {
                await publisher.PublishAsync("events.stream", Encoding.UTF8.GetBytes(sent.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            }
        }

        await PublishSome(500);
        using var bad = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await bad.ConnectAsync(new UnixDomainSocketEndPoint(agent.SocketPath));
        await bad.SendAsync(bytes);
        await PublishSome(500);
        bad.Shutdown(SocketShutdown.Send); // the truncated case: the stream ends mid-frame

        var frames = await ReadUntilClosedAsync(bad);
        var error = Assert.Single(frames, f => f.BodyCase == Envelope.BodyOneofCase.Error).Error;
        Assert.True(expected == error.Code, $"{what}: expected {expected}, got {error.Code}: {error.Message}");
        Assert.True(error.Fatal, what);
        Assert.NotEmpty(error.Message);

        await PublishSome(500);
        await publisher.FlushAsync().WaitAsync(Patience);
        var received = await DrainAsync(subscriber, subscription);
        Assert.Equal(Enumerable.Range(0, 1500).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)), received.Select(Text));
        Assert.Equal(0, subscriber.DroppedTotal);
    }

    private static async Task<List<Envelope>> ReadUntilClosedAsync(Socket socket)
    {
        using var cts = new CancellationTokenSource(Patience);
        var buffer = new List<byte>();
        var chunk = new byte[4096];
        while (true)
        {
            var n = await socket.ReceiveAsync(chunk, SocketFlags.None, cts.Token);
            if (n == 0)
            {
                break;
            }

            buffer.AddRange(chunk.AsSpan(0, n));
        }

        var frames = new List<Envelope>();
        var sequence = new System.Buffers.ReadOnlySequence<byte>(buffer.ToArray());
        while (Framing.TryReadFrame(ref sequence, Framing.DefaultMaxFrameSize, out var frame, out _) == FrameStatus.Complete)
        {
            frames.Add(Envelope.Parser.ParseFrom(frame));
        }

        Assert.Equal(0, sequence.Length);
        return frames;
    }

    [Fact]
    public async Task A_slow_subscribers_received_plus_dropped_equals_published()
    {
        await using var agent = await AgentProcess.StartAsync(new Dictionary<string, string> { ["DAEMONEYE_BROKER__MESSAGE_BUFFER_SIZE"] = "64" });
        var options = Options(agent, "slow");
        options.SubscriptionBufferSize = 1;
        await using var slow = await BusClient.ConnectAsync(options);
        await using var publisher = await BusClient.ConnectAsync(Options(agent, "publisher"));
        var subscription = await slow.SubscribeAsync("events.flood");
        var notices = new List<BusDroppedEventArgs>();
        slow.Dropped += (_, e) =>
        {
            lock (notices)
            {
                notices.Add(e);
            }
        };

        const int Published = 20_000;
        var payload = new byte[512];
        for (var i = 0; i < Published; i++)
        {
            await publisher.PublishAsync("events.flood", payload);
        }

        // Nobody has read yet: the client stopped reading its socket, the agent buffered 64, and dropped the rest.
        await publisher.FlushAsync().WaitAsync(Patience);
        var received = new List<BusMessage>();
        var reading = Task.Run(async () =>
        {
            await foreach (var message in subscription.ReadAllAsync())
            {
                received.Add(message);
            }
        });
        await slow.FlushAsync().WaitAsync(Patience);
        await subscription.UnsubscribeAsync();
        await reading.WaitAsync(Patience);

        Assert.True(slow.DroppedTotal > 0, "nothing was dropped; the test did not overload the subscriber");
        Assert.Equal(Published, received.Count + slow.DroppedTotal);
        // Every Dropped notice was raised, with the agent's running count for this connection and the client's own total.
        lock (notices)
        {
            Assert.NotEmpty(notices);
            Assert.Equal(slow.DroppedTotal, notices.Sum(n => (long)n.Count));
            var running = 0L;
            foreach (var notice in notices)
            {
                running += (long)notice.Count;
                Assert.Equal(running, notice.Total);
                // The agent reads its total just after taking the count, so it may already include drops the next notice reports.
                Assert.True(notice.ConnectionTotal >= (ulong)running, $"agent total {notice.ConnectionTotal} < {running} reported");
                Assert.Contains("broker.message_buffer_size = 64", notice.Reason, StringComparison.Ordinal);
            }

            Assert.Equal((ulong)slow.DroppedTotal, notices[^1].ConnectionTotal);
        }

        // What arrived is in order; the gaps are the drops.
        Assert.Equal(received.Select(m => m.Sequence).Order(), received.Select(m => m.Sequence));
        Assert.Equal(received.Count, received.Select(m => m.Sequence).Distinct().Count());
    }

    [Fact]
    public async Task After_an_agent_restart_the_client_reconnects_and_its_subscriptions_work_again()
    {
        var agent = await AgentProcess.StartAsync();
        try
        {
            await using var subscriber = await BusClient.ConnectAsync(Options(agent, "subscriber"));
            var subscription = await subscriber.SubscribeAsync("events.process.#");
            var exact = await subscriber.SubscribeAsync("events.process.lifecycle");
            var reconnected = new TaskCompletionSource<BusReconnectedEventArgs>(TaskCreationOptions.RunContinuationsAsynchronously);
            subscriber.Reconnected += (_, e) => reconnected.TrySetResult(e);

            await using (var publisher = await BusClient.ConnectAsync(Options(agent, "publisher")))
            {
                await publisher.PublishAsync("events.process.lifecycle", "before"u8.ToArray());
                await publisher.FlushAsync().WaitAsync(Patience);
            }

            Assert.Equal(["before"], (await DrainAsync(subscriber, subscription)).Select(Text));
            Assert.Equal(["before"], (await DrainAsync(subscriber, exact)).Select(Text));

            await agent.StopAsync();
            Assert.Equal(0, agent.ExitCode);
            Assert.False(File.Exists(agent.SocketPath), "the agent left its socket behind");
            var restarted = await AgentProcess.StartAsync(reuse: agent);
            await agent.DisposeAsync(keepDirectory: true);
            agent = restarted;

            var args = await reconnected.Task.WaitAsync(Patience);
            Assert.Equal(2, args.RestoredSubscriptions);
            Assert.Equal(args.ConnectionId, subscriber.ConnectionId);
            await using (var publisher = await BusClient.ConnectAsync(Options(agent, "publisher-2")))
            {
                await publisher.PublishAsync("events.process.lifecycle", "after"u8.ToArray());
                await publisher.FlushAsync().WaitAsync(Patience);
            }

            var after = await DrainAsync(subscriber, subscription);
            Assert.Equal(["after"], after.Select(Text));
            Assert.Equal(1UL, after[0].Sequence); // a new agent process numbers topics afresh
            Assert.Same(after[0], Assert.Single(await DrainAsync(subscriber, exact)));
        }
        finally
        {
            await agent.DisposeAsync();
        }
    }

    [Fact]
    public async Task Cli_publish_and_subscribe_json_work_end_to_end()
    {
        await using var agent = await AgentProcess.StartAsync();
        using var subscriber = new CliProcess(agent.SocketPath, "subscribed to", "subscribe", "events.process.#", "--json", "--count", "2");
        await subscriber.Marker.WaitAsync(Patience);

        var (code, stdout, stderr) = await CliProcess.RunAsync(agent.SocketPath, Patience, "publish", "events.process.lifecycle", "started pid 42", "--count", "2", "--correlation-id", "op-1");
        Assert.True(code == 0, stderr);
        Assert.Contains("published 2 message(s)", string.Join('\n', stdout), StringComparison.Ordinal);

        Assert.Equal(0, await subscriber.WaitAsync(Patience));
        var lines = subscriber.Stdout;
        Assert.Equal(2, lines.Count);
        for (var i = 0; i < 2; i++)
        {
            using var json = JsonDocument.Parse(lines[i]);
            var root = json.RootElement;
            Assert.Equal("events.process.lifecycle", root.GetProperty("topic").GetString());
            Assert.Equal((ulong)(i + 1), root.GetProperty("sequence").GetUInt64());
            Assert.Equal($"op-1-{i + 1}", root.GetProperty("correlation_id").GetString());
            Assert.Equal("op-1", root.GetProperty("root_correlation_id").GetString());
            Assert.Equal("started pid 42", root.GetProperty("payload").GetString());
            Assert.True(DateTimeOffset.TryParse(root.GetProperty("timestamp").GetString(), System.Globalization.CultureInfo.InvariantCulture, out _));
        }
    }

    [Fact]
    public async Task Cli_reports_a_missing_agent_and_bench_accounts_for_every_message()
    {
        var (code, _, stderr) = await CliProcess.RunAsync("/tmp/de-e2e-none/bus.sock", Patience, "publish", "events.a", "x");
        Assert.Equal(3, code);
        Assert.Contains("agent socket not found at /tmp/de-e2e-none/bus.sock", stderr, StringComparison.Ordinal);

        await using var agent = await AgentProcess.StartAsync();
        var (benchCode, stdout, benchErr) = await CliProcess.RunAsync(agent.SocketPath, TimeSpan.FromSeconds(120), "bench", "pubsub", "--messages", "20000", "--subscribers", "2", "--json");
        Assert.True(benchCode == 0, benchErr);
        using var json = JsonDocument.Parse(Assert.Single(stdout));
        var root = json.RootElement;
        Assert.Equal(40_000, root.GetProperty("delivered").GetInt64() + root.GetProperty("dropped").GetInt64());
        Assert.True(root.GetProperty("sent_per_sec").GetDouble() > 0);
        Assert.True(root.GetProperty("latency_us").GetProperty("p999").GetDouble() >= root.GetProperty("latency_us").GetProperty("p50").GetDouble());
    }

    [Fact]
    public async Task Bench_never_sends_ahead_of_its_schedule_and_records_only_what_follows_the_warm_up()
    {
        await using var agent = await AgentProcess.StartAsync();
        foreach (var receive in new[] { new[] { "--receive", "handler" }, new[] { "--receive", "channel", "--completions", "thread-pool" } })
        {
            var (code, stdout, stderr) = await CliProcess.RunAsync(agent.SocketPath, TimeSpan.FromSeconds(120),
                ["bench", "pubsub", "--rate", "20000", "--messages", "4000", "--warmup", "1000", "--json", .. receive]);
            Assert.True(code == 0, stderr);
            using var json = JsonDocument.Parse(Assert.Single(stdout));
            var root = json.RootElement;
            var delivered = root.GetProperty("delivered").GetInt64();
            var dropped = root.GetProperty("dropped").GetInt64();
            Assert.Equal(4000, delivered + dropped);
            // Message n is due n / 20,000 s after the first: the last one 0.19995 s after it, never sooner.
            Assert.True(root.GetProperty("publish_seconds").GetDouble() >= 0.19995, root.ToString());
            Assert.True(root.GetProperty("offered_per_sec").GetDouble() <= 20_005, root.ToString());
            var recorded = root.GetProperty("recorded").GetInt64();
            Assert.InRange(recorded, 3000 - dropped, 3000);
            Assert.Equal(receive[1], root.GetProperty("receive").GetString());
        }
    }
}
