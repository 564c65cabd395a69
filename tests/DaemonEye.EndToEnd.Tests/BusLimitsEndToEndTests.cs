using System.Net.Sockets;
using DaemonEye.Protocol;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.V1;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// The agent's own bounds, against real sockets: a client that does not read what it asked for is
/// cut off instead of growing the agent, and topic state is capped overall and per connection and
/// released when idle. Every refusal is counted where the operator looks (status).
/// </summary>
public sealed class BusLimitsEndToEndTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private static async Task<ulong> RefusedAsync(AgentProcess agent, string limit)
    {
        var status = (await IpcProbe.SendAsync(agent.IpcSocketPath, new IpcRequest { Status = new StatusRequest() })).Status;
        return status.Security.Limits.TryGetValue(limit, out var count) ? count : 0;
    }

    private static long RssKb(int pid) =>
        long.Parse(File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public async Task A_client_that_sends_pings_and_never_reads_is_cut_off_counted_and_the_agent_stays_small()
    {
        await using var agent = await AgentProcess.StartAsync(new Dictionary<string, string>
        {
            ["DAEMONEYE_BROKER__MAX_FRAME_SIZE"] = "16384",
            ["DAEMONEYE_BROKER__MAX_OUTBOUND_BYTES"] = "65536",
        });
        await using var bystander = await RawBus.ConnectAsync(agent.SocketPath, "bystander", Role.Client);
        var rssBefore = RssKb(agent.Pid);

        // 1,000 Pings a send, never a read: every Pong the agent owes waits in its kernel buffer, then
        // in its outbound queue, until the queue's bytes would pass 64 KiB and the agent cuts it off.
        await using var greedy = await RawBus.ConnectAsync(agent.SocketPath, "greedy", Role.Client);
        var pings = new List<byte>();
        for (uint i = 0; i < 1000; i++)
        {
            pings.AddRange(Framing.ToFrame(new Envelope { RequestId = i + 1, Ping = new Ping { Nonce = i } }));
        }

        var burst = pings.ToArray();
        var cut = false;
        using var patience = new CancellationTokenSource(Patience);
        for (var round = 0; round < 20_000 && !cut; round++)
        {
            try
            {
                await greedy.SendRawAsync(burst).WaitAsync(patience.Token);
            }
            catch (SocketException)
            {
                cut = true; // EPIPE or ECONNRESET: the agent shut the connection
            }
        }

        Assert.True(cut, "the agent kept taking Pings from a client that never read its Pongs");
        Assert.Equal(1ul, await RefusedAsync(agent, "broker.max_outbound_bytes"));
        await agent.WaitForLineAsync(l => l.Contains("cut off: it is not reading", StringComparison.Ordinal) && l.Contains("greedy", StringComparison.Ordinal), includeEarlier: true);
        Assert.True(RssKb(agent.Pid) - rssBefore < 100_000, $"the agent grew from {rssBefore} kB to {RssKb(agent.Pid)} kB");

        // health says so, and everyone else is served as before.
        var health = (await IpcProbe.SendAsync(agent.IpcSocketPath, new IpcRequest { Health = new HealthRequest() })).Health;
        Assert.Contains("1 client(s) cut off for not reading (broker.max_outbound_bytes)", health.Checks.Single(c => c.Name == "buffers").Detail);
        Assert.Null(await bystander.PublishAsync("events.limits.after"));
    }

    [Fact]
    public async Task Deliveries_to_a_subscriber_that_does_not_read_are_bounded_in_bytes_and_the_rest_counted()
    {
        // 2,000 messages of 8 KB (16 MB) for a subscriber that reads nothing until the end. The
        // message budget (10,000) would take them all; the byte budget (64 KiB) takes a handful
        // beyond what the kernel's socket buffer holds, and the rest are dropped and counted.
        const int Published = 2000;
        await using var agent = await AgentProcess.StartAsync(new Dictionary<string, string>
        {
            ["DAEMONEYE_BROKER__MAX_FRAME_SIZE"] = "16384",
            ["DAEMONEYE_BROKER__MAX_OUTBOUND_BYTES"] = "65536",
        });
        await using var stalled = await RawBus.ConnectAsync(agent.SocketPath, "stalled", Role.Client);
        Assert.Equal(Envelope.BodyOneofCase.SubscribeAck, (await stalled.SubscribeAsync("events.bytes.#")).BodyCase);
        await using var publisher = await RawBus.ConnectAsync(agent.SocketPath, "publisher", Role.Client);

        var frame = Framing.ToFrame(new Envelope { Publish = new Publish { Topic = "events.bytes.big", Payload = Google.Protobuf.ByteString.CopyFrom(new byte[8000]) } });
        var burst = new byte[frame.Length * 100];
        for (var i = 0; i < 100; i++)
        {
            frame.CopyTo(burst, i * frame.Length);
        }

        for (var i = 0; i < Published / 100; i++)
        {
            await publisher.SendRawAsync(burst);
        }

        Assert.Empty(await publisher.SettleAsync()); // every publish routed, none refused

        // health shows the bytes waiting and the peak, within the budget.
        var buffers = (await IpcProbe.SendAsync(agent.IpcSocketPath, new IpcRequest { Health = new HealthRequest() })).Health.Checks.Single(c => c.Name == "buffers").Detail;
        var peak = System.Text.RegularExpressions.Regex.Match(buffers, @"peaks \d+ messages \(c\d+\), (\d+) bytes");
        Assert.True(peak.Success, buffers);
        Assert.InRange(long.Parse(peak.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), 8000, 65536);

        // Now it reads: what was sent or queued, then a Dropped notice for the rest; nothing unaccounted.
        var frames = await stalled.SettleAsync();
        var delivered = frames.Count(f => f.BodyCase == Envelope.BodyOneofCase.Deliver);
        var dropped = frames.Where(f => f.BodyCase == Envelope.BodyOneofCase.Dropped).Sum(f => (long)f.Dropped.Count);
        Assert.Equal(Published, delivered + dropped);
        Assert.True(delivered < 200, $"{delivered} messages of 8 KB reached a subscriber whose budget is 64 KiB plus its socket buffer");
        Assert.Contains($"{dropped} dropped", (await IpcProbe.SendAsync(agent.IpcSocketPath, new IpcRequest { Health = new HealthRequest() })).Health.Checks.Single(c => c.Name == "buffers").Detail);
    }

    [Fact]
    public async Task Topics_are_capped_per_connection_and_overall_refusals_counted_and_idle_topics_released()
    {
        await using var agent = await AgentProcess.StartAsync(new Dictionary<string, string>
        {
            ["DAEMONEYE_BROKER__MAX_TOPICS"] = "5",
            ["DAEMONEYE_BROKER__MAX_TOPICS_PER_CONNECTION"] = "3",
            ["DAEMONEYE_BROKER__TOPIC_IDLE_SECONDS"] = "1",
        });
        await using var a = await RawBus.ConnectAsync(agent.SocketPath, "topics-a", Role.Client);
        await using var b = await RawBus.ConnectAsync(agent.SocketPath, "topics-b", Role.Client);

        foreach (var topic in new[] { "events.a.one", "events.a.two", "events.a.three" })
        {
            Assert.Null(await a.PublishAsync(topic));
        }

        Assert.Null(await a.PublishAsync("events.a.one")); // a topic in use takes more publishes
        var perConnection = await a.PublishAsync("events.a.four");
        Assert.NotNull(perConnection);
        Assert.Equal(ErrorCode.LimitExceeded, perConnection.Code);
        Assert.False(perConnection.Fatal);
        Assert.Contains("broker.max_topics_per_connection is 3", perConnection.Message);

        Assert.Null(await b.PublishAsync("events.b.one"));
        Assert.Null(await b.PublishAsync("events.b.two"));
        var overall = await b.PublishAsync("events.b.three");
        Assert.NotNull(overall);
        Assert.Equal(ErrorCode.LimitExceeded, overall.Code);
        Assert.Contains("broker.max_topics is 5", overall.Message);

        Assert.Equal(1ul, await RefusedAsync(agent, "broker.max_topics_per_connection"));
        Assert.Equal(1ul, await RefusedAsync(agent, "broker.max_topics"));

        // A second after their last publish the topics release their state; the registry sees them go.
        using var patience = new CancellationTokenSource(Patience);
        while ((await IpcProbe.SendAsync(agent.IpcSocketPath, new IpcRequest { Status = new StatusRequest() }, patience.Token)).Status.Broker.ActiveTopics > 0)
        {
            await Task.Yield();
        }

        // Released, they make room on both counts; numbering continues where it stopped.
        Assert.Null(await a.PublishAsync("events.a.four"));
        Assert.Null(await b.PublishAsync("events.b.three"));
        var sub = await b.SubscribeAsync("events.a.one");
        Assert.Equal(Envelope.BodyOneofCase.SubscribeAck, sub.BodyCase);
        Assert.Null(await a.PublishAsync("events.a.one"));
        var delivered = (await b.SettleAsync()).Single(f => f.BodyCase == Envelope.BodyOneofCase.Deliver).Deliver;
        Assert.Equal(3ul, delivered.Sequence);
    }
}
