using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.V1;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// The product document's "Correlation IDs validated for uniqueness", against the real agent: a
/// publisher repeating one of its recent correlation ids is refused with a clear error and counted;
/// subscribers see the first message only; the window is per connection and moves on.
/// </summary>
public sealed class BusValidationEndToEndTests
{
    private static CorrelationMetadata Id(string id) => new() { CorrelationId = id, RootCorrelationId = id };

    private static async Task<ulong> RefusedAsync(AgentProcess agent)
    {
        var status = (await IpcProbe.SendAsync(agent.IpcSocketPath, new IpcRequest { Status = new StatusRequest() })).Status;
        return status.Security.Limits.TryGetValue("broker.correlation_window", out var count) ? count : 0;
    }

    [Fact]
    public async Task A_repeated_correlation_id_is_refused_counted_and_not_delivered_within_the_window_only()
    {
        await using var agent = await AgentProcess.StartAsync(new Dictionary<string, string>
        {
            ["DAEMONEYE_BROKER__CORRELATION_WINDOW"] = "3",
        });
        await using var subscriber = await RawBus.ConnectAsync(agent.SocketPath, "watcher", Role.Client);
        Assert.Equal(Envelope.BodyOneofCase.SubscribeAck, (await subscriber.SubscribeAsync("events.unique.#")).BodyCase);
        await using var publisher = await RawBus.ConnectAsync(agent.SocketPath, "repeater", Role.Client);
        await using var other = await RawBus.ConnectAsync(agent.SocketPath, "other", Role.Client);

        Assert.Null(await publisher.PublishAsync("events.unique.a", Id("evt-1")));
        var repeat = await publisher.PublishAsync("events.unique.b", Id("evt-1"));
        Assert.NotNull(repeat);
        Assert.Equal(ErrorCode.InvalidMessage, repeat.Code);
        Assert.False(repeat.Fatal);
        Assert.Equal("publish to 'events.unique.b' refused: correlation.correlation_id 'evt-1' repeats one of this connection's last 3 publishes (broker.correlation_window); give each message its own id, or none", repeat.Message);
        Assert.Equal(1ul, await RefusedAsync(agent));

        // Another connection's ids are its own; messages without an id are never compared.
        Assert.Null(await other.PublishAsync("events.unique.c", Id("evt-1")));
        Assert.Null(await publisher.PublishAsync("events.unique.d"));
        Assert.Null(await publisher.PublishAsync("events.unique.d"));

        // Three newer ids push evt-1 out of the publisher's window: it is accepted again.
        foreach (var id in new[] { "evt-2", "evt-3", "evt-4" })
        {
            Assert.Null(await publisher.PublishAsync("events.unique.e", Id(id)));
        }

        Assert.Null(await publisher.PublishAsync("events.unique.f", Id("evt-1")));
        Assert.NotNull(await publisher.PublishAsync("events.unique.f", Id("evt-4")));
        Assert.Equal(2ul, await RefusedAsync(agent));

        var seen = (await subscriber.SettleAsync()).Where(f => f.BodyCase == Envelope.BodyOneofCase.Deliver)
            .Select(f => $"{f.Deliver.Message.Topic}:{f.Deliver.Message.Correlation?.CorrelationId}")
            .ToList();
        Assert.Equal(["events.unique.a:evt-1", "events.unique.c:evt-1", "events.unique.d:", "events.unique.d:", "events.unique.e:evt-2", "events.unique.e:evt-3", "events.unique.e:evt-4", "events.unique.f:evt-1"], seen);
    }

    [Fact]
    public async Task With_a_window_of_zero_repeats_pass()
    {
        await using var agent = await AgentProcess.StartAsync(new Dictionary<string, string>
        {
            ["DAEMONEYE_BROKER__CORRELATION_WINDOW"] = "0",
        });
        await using var publisher = await RawBus.ConnectAsync(agent.SocketPath, "repeater", Role.Client);
        Assert.Null(await publisher.PublishAsync("events.unique.a", Id("same")));
        Assert.Null(await publisher.PublishAsync("events.unique.a", Id("same")));
        Assert.Equal(0ul, await RefusedAsync(agent));
    }
}
