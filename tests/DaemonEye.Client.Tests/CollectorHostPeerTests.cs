using DaemonEye.Protocol.V1;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Time.Testing;

namespace DaemonEye.Client.Tests;

/// <summary>The collector host (AddDaemonEyeCollector) serving RPC requests from a raw peer.</summary>
public sealed class CollectorHostPeerTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    // The peer: sends RpcRequests whose deadline has already passed. The real agent never forwards
    // such a request (it answers Timeout at the deadline itself), so only a peer can check that the
    // host neither executes nor answers one (docs/collectors.md, "How the host serves RPCs").
    [Fact]
    public async Task A_request_that_arrives_after_its_deadline_is_not_executed_and_not_answered()
    {
        await using var peer = new RawPeer();
        using var patience = new CancellationTokenSource(Patience);
        var clock = new FakeTimeProvider(new DateTimeOffset(2025, 3, 4, 5, 6, 7, TimeSpan.Zero));
        var now = UnixTime.ToNanos(clock.GetUtcNow());
        var executed = new List<string>();

        var builder = new HostApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Services.AddDaemonEyeCollector(o =>
        {
            o.CollectorId = "expiry";
            o.SendHeartbeats = false;
            o.Bus.SocketPath = peer.SocketPath;
            o.Bus.TimeProvider = clock;
        })
        .Handle(RpcOperation.UpdateConfig, (call, _) =>
        {
            lock (executed)
            {
                executed.Add(call.Correlation.CorrelationId);
            }

            return ValueTask.FromResult(Google.Protobuf.ByteString.Empty);
        });
        using var host = builder.Build();
        var accepted = peer.AcceptAsync(patience.Token);
        await host.StartAsync(patience.Token);
        using var connection = await accepted;
        Assert.Equal(Role.Collector, connection.Hello.Role);
        Assert.Equal("expiry", connection.Hello.ClientId);

        RpcRequest Request(string id, ulong deadline) => new()
        {
            Correlation = new CorrelationMetadata { CorrelationId = id, RootCorrelationId = id, SequenceNumber = 1 },
            Operation = RpcOperation.UpdateConfig,
            TimestampUnixNanos = now - 1_000_000_000,
            DeadlineUnixNanos = deadline,
        };

        // Served one after the other in arrival order: expired at exactly now, expired a minute ago,
        // then one with time left and one without a deadline, which are answered.
        await connection.SendAsync(new Envelope { RpcRequest = Request("at-deadline", now) }, patience.Token);
        await connection.SendAsync(new Envelope { RpcRequest = Request("long-gone", now - 60_000_000_000) }, patience.Token);
        await connection.SendAsync(new Envelope { RpcRequest = Request("in-time", now + 1_000_000_000) }, patience.Token);
        await connection.SendAsync(new Envelope { RpcRequest = Request("no-deadline", 0) }, patience.Token);
        var answers = await connection.ReadAsync(Envelope.BodyOneofCase.RpcResponse, 2, patience.Token);
        Assert.Equal(["in-time", "no-deadline"], answers.Select(a => a.RpcResponse.Correlation.CorrelationId).Order());
        Assert.All(answers, a => Assert.Equal(RpcStatus.Ok, a.RpcResponse.Status));

        // Stopping flushes the client with a Ping barrier: every answer the host made is before it.
        var stopping = host.StopAsync(patience.Token);
        var rest = new List<Envelope>();
        var ping = await connection.ReadAsync(patience.Token);
        for (; ping.BodyCase != Envelope.BodyOneofCase.Ping; ping = await connection.ReadAsync(patience.Token))
        {
            rest.Add(ping);
        }

        Assert.DoesNotContain(rest, e => e.BodyCase == Envelope.BodyOneofCase.RpcResponse);
        lock (executed)
        {
            Assert.Equal(["in-time", "no-deadline"], executed.Order());
        }

        Assert.Equal(2, host.Services.GetRequiredService<CollectorHost>().ExpiredRequests);
        await connection.SendAsync(new Envelope { RequestId = ping.RequestId, Pong = new Pong { Nonce = ping.Ping.Nonce } }, patience.Token);
        await stopping.WaitAsync(Patience);
    }

    [Fact]
    public async Task The_host_sets_its_busy_poll_window_on_the_process_reactor_before_it_connects()
    {
        await using var peer = new RawPeer();
        using var patience = new CancellationTokenSource(Patience);
        var reactor = Networking.SocketReactor.Shared;
        var before = reactor.BusyPoll;
        var builder = new HostApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Services.AddDaemonEyeCollector(o =>
        {
            o.CollectorId = "polling";
            o.SendHeartbeats = false;
            o.Bus.SocketPath = peer.SocketPath;
            o.BusyPoll = TimeSpan.FromMicroseconds(300);
        });
        using var host = builder.Build();
        try
        {
            var accepted = peer.AcceptAsync(patience.Token);
            await host.StartAsync(patience.Token);
            using var connection = await accepted;
            Assert.Equal("polling", connection.Hello.ClientId);
            Assert.Equal(TimeSpan.FromMicroseconds(300), reactor.BusyPoll);

            // Stopping flushes the client with a Ping barrier; the peer answers it.
            var stopping = host.StopAsync(patience.Token);
            var ping = await connection.ReadAsync(patience.Token);
            while (ping.BodyCase != Envelope.BodyOneofCase.Ping)
            {
                ping = await connection.ReadAsync(patience.Token);
            }

            await connection.SendAsync(new Envelope { RequestId = ping.RequestId, Pong = new Pong { Nonce = ping.Ping.Nonce } }, patience.Token);
            await stopping.WaitAsync(Patience);
        }
        finally
        {
            reactor.BusyPoll = before; // process-wide: the other tests' clients share this reactor
        }
    }
}
