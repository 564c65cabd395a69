using DaemonEye.Client;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.V1;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// One agent for the access-rule and limit tests: a collector it spawns itself ("spawned", slow to
/// answer HealthCheck so calls stay pending), a registration token for an outside collector
/// ("outside"), small per-connection, per-topic and total subscription limits, and a 2 KiB frame limit.
/// </summary>
public sealed class AccessControlAgentFixture : IAsyncLifetime
{
    public const string Spawned = "spawned";
    public const string Outside = "outside";
    public const int MaxSubscriptionsPerConnection = 3;
    public const int MaxSubscribersPerTopic = 2;
    // Above what the other tests hold at once (a few), so only the test of this limit reaches it.
    public const int MaxSubscribers = 16;
    public const int MaxFrameSize = 2048;

    internal AgentProcess Agent { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        var env = new Dictionary<string, string>(TestTokens.AgentSettings(Outside))
        {
            ["DAEMONEYE_COLLECTORS__0__ID"] = Spawned,
            ["DAEMONEYE_COLLECTORS__0__EXECUTABLE"] = Paths.TestCollectorDll,
            ["DAEMONEYE_COLLECTORS__0__ARGUMENTS__0"] = "--health-delay-ms",
            ["DAEMONEYE_COLLECTORS__0__ARGUMENTS__1"] = "1500",
            ["DAEMONEYE_BROKER__MAX_SUBSCRIPTIONS_PER_CONNECTION"] = MaxSubscriptionsPerConnection.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["DAEMONEYE_BROKER__MAX_SUBSCRIBERS_PER_TOPIC"] = MaxSubscribersPerTopic.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["DAEMONEYE_BROKER__MAX_SUBSCRIBERS"] = MaxSubscribers.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["DAEMONEYE_BROKER__MAX_FRAME_SIZE"] = MaxFrameSize.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        Agent = await AgentProcess.StartAsync(env);

        // The spawned collector carries no token: it can only be Running if the agent knew its pid.
        await using var watcher = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = Agent.SocketPath, ClientId = "acl-watcher", Role = Role.Cli });
        await using var lifecycle = await watcher.SubscribeAsync("control.collector.lifecycle");
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var status = await IpcProbe.CollectorAsync(Agent.IpcSocketPath, Spawned);
        await using var events = lifecycle.ReadAllAsync(timeout.Token).GetAsyncEnumerator(timeout.Token);
        while (status.State != CollectorState.Running && await events.MoveNextAsync())
        {
            status = await IpcProbe.CollectorAsync(Agent.IpcSocketPath, Spawned);
        }

        Assert.True(status.State == CollectorState.Running, $"the spawned collector is {status.State}: {status.Reason}\n{Agent.Log}");
    }

    public async Task DisposeAsync()
    {
        if (Agent is not null)
        {
            await Agent.DisposeAsync();
        }
    }
}

/// <summary>Each access rule, allowed and denied, and each limit, through the agent's real socket;
/// every refusal's error names the rule or key, and its counter in the IPC status moves.</summary>
public sealed class AccessControlEndToEndTests(AccessControlAgentFixture fixture) : IClassFixture<AccessControlAgentFixture>
{
    private string Socket => fixture.Agent.SocketPath;

    private async Task<SecurityStatistics> SecurityAsync() =>
        (await IpcProbe.SendAsync(fixture.Agent.IpcSocketPath, new IpcRequest { Status = new StatusRequest() })).Status.Security;

    private async Task<ulong> DeniedAsync(string rule) => (await SecurityAsync()).Denied[rule];

    private async Task<ulong> LimitAsync(string limit) => (await SecurityAsync()).Limits[limit];

    private Task<RawBus> OutsideCollectorAsync(params string[] capabilities) =>
        RawBus.ConnectAsync(Socket, AccessControlAgentFixture.Outside, Role.Collector, TestTokens.For(AccessControlAgentFixture.Outside), capabilities);

    private static RpcRequest HealthCheck(string target, string correlationId, uint timeoutMs = 20_000) => new()
    {
        Correlation = new CorrelationMetadata { CorrelationId = correlationId, RootCorrelationId = correlationId },
        Operation = RpcOperation.HealthCheck,
        Target = "control.collector." + target,
        TimeoutMs = timeoutMs,
    };

    private static void AssertNotAuthorized(Error? error, string rule)
    {
        Assert.NotNull(error);
        Assert.Equal(ErrorCode.NotAuthorized, error.Code);
        Assert.Contains($"rule {rule}", error.Message);
    }

    [Fact]
    public async Task A_collector_started_outside_the_agent_registers_only_with_its_token()
    {
        var before = await DeniedAsync("collector.authentication");
        foreach (var token in new[] { null, "a-wrong-token-of-enough-length" })
        {
            await using var refused = await RawBus.ConnectAsync(Socket, AccessControlAgentFixture.Outside, Role.Collector, token, "publish:events.outside.#");
            Assert.Equal(Envelope.BodyOneofCase.Error, refused.HelloReply.BodyCase);
            AssertNotAuthorized(refused.HelloReply.Error, "collector.authentication");
            Assert.True(refused.HelloReply.Error.Fatal);
            Assert.Contains(token is null ? "presented no registration token" : "presented a wrong registration token", refused.HelloReply.Error.Message);
            Assert.Null(await refused.TryReadAsync()); // closed
        }

        // The right token for another id is no good either: the token proves one id.
        await using (var other = await RawBus.ConnectAsync(Socket, "impostor", Role.Collector, TestTokens.For(AccessControlAgentFixture.Outside)))
        {
            AssertNotAuthorized(other.HelloReply.Error, "collector.authentication");
        }

        // Nor does anyone get the spawned collector's id: it is known by its pid, and this is not it.
        await using (var fake = await RawBus.ConnectAsync(Socket, "fake-" + AccessControlAgentFixture.Spawned, Role.Collector))
        {
            AssertNotAuthorized(fake.HelloReply.Error, "collector.authentication");
        }

        Assert.Equal(before + 4, await DeniedAsync("collector.authentication"));

        await using var accepted = await OutsideCollectorAsync("publish:events.outside.#");
        Assert.Equal(Envelope.BodyOneofCase.Welcome, accepted.HelloReply.BodyCase);
        Assert.Equal(Role.Collector, accepted.HelloReply.Welcome.Role);
    }

    [Fact]
    public async Task A_collector_may_declare_publish_patterns_only_under_events()
    {
        var before = await DeniedAsync("collector.declared_publish");
        await using var refused = await OutsideCollectorAsync("publish:control.#");
        AssertNotAuthorized(refused.HelloReply.Error, "collector.declared_publish");
        Assert.Contains("only under events.#", refused.HelloReply.Error.Message);
        Assert.Equal(before + 1, await DeniedAsync("collector.declared_publish"));
    }

    [Fact]
    public async Task A_collector_publishes_only_on_its_declared_domains_and_its_own_health_topics()
    {
        await using var watcher = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = Socket, ClientId = "pub-watcher", Role = Role.Cli });
        await using var seen = await watcher.SubscribeAsync("#");
        await using var collector = await OutsideCollectorAsync("publish:events.outside.#");
        var before = await DeniedAsync("collector.publish");

        Assert.Null(await collector.PublishAsync("events.outside.lifecycle"));
        Assert.Null(await collector.PublishAsync("control.health.heartbeat." + AccessControlAgentFixture.Outside));
        AssertNotAuthorized(await collector.PublishAsync("events.process.lifecycle"), "collector.publish");
        AssertNotAuthorized(await collector.PublishAsync("control.health.heartbeat.someone-else"), "collector.publish");
        AssertNotAuthorized(await collector.PublishAsync("control.outside.note"), "collector.publish");
        // Cached per topic on the connection: a second refusal on the same topic is still refused and counted.
        AssertNotAuthorized(await collector.PublishAsync("events.process.lifecycle"), "collector.publish");

        Assert.Equal(before + 4, await DeniedAsync("collector.publish"));
        await watcher.FlushAsync();
        var topics = new List<string>();
        while (seen.Reader.TryRead(out var message))
        {
            topics.Add(message.Topic);
        }

        Assert.Contains("events.outside.lifecycle", topics);
        Assert.Contains("control.health.heartbeat." + AccessControlAgentFixture.Outside, topics);
        Assert.DoesNotContain("events.process.lifecycle", topics);
        Assert.DoesNotContain("control.health.heartbeat.someone-else", topics);
        Assert.DoesNotContain("control.outside.note", topics);
    }

    [Fact]
    public async Task A_collector_subscribes_only_within_its_own_control_topics()
    {
        await using var collector = await OutsideCollectorAsync();
        var before = await DeniedAsync("collector.subscribe");
        var id = AccessControlAgentFixture.Outside;

        Assert.Equal(Envelope.BodyOneofCase.SubscribeAck, (await collector.SubscribeAsync($"control.collector.{id}")).BodyCase);
        Assert.Equal(Envelope.BodyOneofCase.SubscribeAck, (await collector.SubscribeAsync($"control.health.+.{id}")).BodyCase);
        AssertNotAuthorized((await collector.SubscribeAsync("events.#")).Error, "collector.subscribe");
        AssertNotAuthorized((await collector.SubscribeAsync("control.collector.+")).Error, "collector.subscribe");
        AssertNotAuthorized((await collector.SubscribeAsync($"control.collector.{AccessControlAgentFixture.Spawned}")).Error, "collector.subscribe");

        Assert.Equal(before + 3, await DeniedAsync("collector.subscribe"));
    }

    [Fact]
    public async Task A_collector_makes_no_rpc_calls_and_answers_only_its_own()
    {
        await using var collector = await OutsideCollectorAsync();
        var beforeCall = await DeniedAsync("collector.rpc_call");
        var refused = await collector.CallAsync(HealthCheck(AccessControlAgentFixture.Spawned, "outside-calls"));
        Assert.Equal(RpcStatus.Error, refused.Status);
        Assert.Equal(RpcErrorKind.NotAuthorized, refused.Error.Kind);
        Assert.Contains("rule collector.rpc_call", refused.Error.Message);
        Assert.Equal(beforeCall + 1, await DeniedAsync("collector.rpc_call"));

        // Lifecycle calls to another collector above all (issue 22): a Stop and a Restart are refused by the same rule.
        foreach (var operation in new[] { RpcOperation.Stop, RpcOperation.Restart })
        {
            var lifecycle = HealthCheck(AccessControlAgentFixture.Spawned, $"outside-{operation}");
            lifecycle.Operation = operation;
            var denied = await collector.CallAsync(lifecycle);
            Assert.Equal((RpcStatus.Error, RpcErrorKind.NotAuthorized), (denied.Status, denied.Error.Kind));
            Assert.Contains("rule collector.rpc_call", denied.Error.Message);
        }

        Assert.Equal(beforeCall + 3, await DeniedAsync("collector.rpc_call"));

        // A call to the spawned collector is pending (it answers after 1.5 s); the outside collector
        // tries to answer it. Refused; the caller still gets the real answer.
        var beforeAnswer = await DeniedAsync("rpc.answer");
        await using var cli = await RawBus.ConnectAsync(Socket, "raw-caller", Role.Cli);
        await cli.SendAsync(new Envelope { RpcRequest = HealthCheck(AccessControlAgentFixture.Spawned, "pending-for-spawned") });
        await cli.SettleAsync(); // routed: now pending
        var hijack = await collector.SendAndSettleAsync(new Envelope
        {
            RpcResponse = new RpcResponse { Correlation = new CorrelationMetadata { CorrelationId = "pending-for-spawned" }, Status = RpcStatus.Ok },
        });
        AssertNotAuthorized(Assert.Single(hijack, f => f.BodyCase == Envelope.BodyOneofCase.Error).Error, "rpc.answer");
        Assert.Contains("only the calls addressed to it", hijack.Single(f => f.BodyCase == Envelope.BodyOneofCase.Error).Error.Message);

        var real = await cli.ResponseAsync("pending-for-spawned");
        Assert.Equal(RpcStatus.Ok, real.Status);
        Assert.Equal("pending-for-spawned", real.Correlation.CorrelationId);

        // A connection that is not a collector answers nothing.
        var fromClient = await cli.SendAndSettleAsync(new Envelope { RpcResponse = new RpcResponse { Correlation = new CorrelationMetadata { CorrelationId = "nothing" } } });
        AssertNotAuthorized(Assert.Single(fromClient).Error, "rpc.answer");
        Assert.Equal(beforeAnswer + 2, await DeniedAsync("rpc.answer"));
    }

    [Fact]
    public async Task The_subscriber_role_is_read_only()
    {
        await using var subscriber = await RawBus.ConnectAsync(Socket, "read-only", Role.Subscriber);
        Assert.Equal(Role.Subscriber, subscriber.HelloReply.Welcome.Role);
        var before = await SecurityAsync();
        var warning = fixture.Agent.WaitForLineAsync(l => l.Contains("(read-only) denied by rule subscriber.publish", StringComparison.Ordinal));

        Assert.Equal(Envelope.BodyOneofCase.SubscribeAck, (await subscriber.SubscribeAsync("control.#")).BodyCase);
        AssertNotAuthorized(await subscriber.PublishAsync("events.readonly.x"), "subscriber.publish");
        // The denial is logged as a warning (event 2301) with the peer's pid and uid, as the kernel reported them.
        var line = await warning.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Contains(" WRN] DaemonEye.Gateway.Security.AccessControl: Connection ", line, StringComparison.Ordinal);
        Assert.Contains($"(pid {Environment.ProcessId}, uid {DaemonEye.Hosting.Posix.EffectiveUserId}): publish to 'events.readonly.x' refused by rule subscriber.publish", line, StringComparison.Ordinal);
        var call = await subscriber.CallAsync(HealthCheck(AccessControlAgentFixture.Spawned, "subscriber-call"));
        Assert.Equal(RpcErrorKind.NotAuthorized, call.Error.Kind);
        Assert.Contains("rule subscriber.rpc_call", call.Error.Message);

        var after = await SecurityAsync();
        Assert.Equal(before.Denied["subscriber.publish"] + 1, after.Denied["subscriber.publish"]);
        Assert.Equal(before.Denied["subscriber.rpc_call"] + 1, after.Denied["subscriber.rpc_call"]);
    }

    [Fact]
    public async Task The_client_role_publishes_events_and_calls_but_only_the_cli_role_publishes_control_topics()
    {
        await using var client = await RawBus.ConnectAsync(Socket, "plain-client", Role.Client);
        Assert.Equal(Role.Client, client.HelloReply.Welcome.Role);
        var before = await DeniedAsync("client.publish_control");

        Assert.Null(await client.PublishAsync("events.client.x"));
        AssertNotAuthorized(await client.PublishAsync("control.health.heartbeat." + AccessControlAgentFixture.Spawned), "client.publish_control");
        Assert.Equal(before + 1, await DeniedAsync("client.publish_control"));
        var answered = await client.CallAsync(HealthCheck(AccessControlAgentFixture.Spawned, "client-call"));
        Assert.Equal(RpcStatus.Ok, answered.Status);

        await using var cli = await RawBus.ConnectAsync(Socket, "operator", Role.Cli);
        Assert.Equal(Role.Cli, cli.HelloReply.Welcome.Role);
        Assert.Null(await cli.PublishAsync("control.operator.note"));
        Assert.Equal(before + 1, await DeniedAsync("client.publish_control"));
    }

    [Fact]
    public async Task Max_subscriptions_per_connection_refuses_the_next_one_and_is_counted()
    {
        await using var client = await RawBus.ConnectAsync(Socket, "many-subs", Role.Client);
        var before = await LimitAsync("broker.max_subscriptions_per_connection");
        for (var i = 0; i < AccessControlAgentFixture.MaxSubscriptionsPerConnection; i++)
        {
            Assert.Equal(Envelope.BodyOneofCase.SubscribeAck, (await client.SubscribeAsync($"events.many.s{i}")).BodyCase);
        }

        var refused = (await client.SubscribeAsync("events.many.one-more")).Error;
        Assert.Equal(ErrorCode.LimitExceeded, refused.Code);
        Assert.Contains($"broker.max_subscriptions_per_connection ({AccessControlAgentFixture.MaxSubscriptionsPerConnection})", refused.Message);
        Assert.False(refused.Fatal);
        Assert.Equal(before + 1, await LimitAsync("broker.max_subscriptions_per_connection"));

        // Another connection is not affected.
        await using var other = await RawBus.ConnectAsync(Socket, "few-subs", Role.Client);
        Assert.Equal(Envelope.BodyOneofCase.SubscribeAck, (await other.SubscribeAsync("events.many.one-more")).BodyCase);
    }

    [Fact]
    public async Task Max_subscribers_per_topic_refuses_the_next_subscriber_of_that_topic_and_is_counted()
    {
        var before = await LimitAsync("broker.max_subscribers_per_topic");
        var clients = new List<RawBus>();
        try
        {
            for (var i = 0; i < AccessControlAgentFixture.MaxSubscribersPerTopic; i++)
            {
                clients.Add(await RawBus.ConnectAsync(Socket, $"topic-sub-{i}", Role.Subscriber));
                Assert.Equal(Envelope.BodyOneofCase.SubscribeAck, (await clients[^1].SubscribeAsync("events.crowded.topic")).BodyCase);
            }

            clients.Add(await RawBus.ConnectAsync(Socket, "topic-sub-late", Role.Subscriber));
            var refused = (await clients[^1].SubscribeAsync("events.crowded.topic")).Error;
            Assert.Equal(ErrorCode.LimitExceeded, refused.Code);
            Assert.Contains($"broker.max_subscribers_per_topic ({AccessControlAgentFixture.MaxSubscribersPerTopic})", refused.Message);
            Assert.Equal(before + 1, await LimitAsync("broker.max_subscribers_per_topic"));
            Assert.Equal(Envelope.BodyOneofCase.SubscribeAck, (await clients[^1].SubscribeAsync("events.quiet.topic")).BodyCase);
        }
        finally
        {
            foreach (var client in clients)
            {
                await client.DisposeAsync();
            }
        }
    }

    [Theory]
    [InlineData(1, "has space")]
    [InlineData(1, "tab\tinside")]
    [InlineData(2, "ünïcode")]
    [InlineData(3, null)] // 129 characters
    public async Task A_publish_with_a_malformed_correlation_id_is_refused_and_counted(int field, string? id)
    {
        id ??= new string('x', 129);
        await using var client = await RawBus.ConnectAsync(Socket, "correlation-pub", Role.Client);
        var before = await LimitAsync("correlation_id");
        var correlation = field switch
        {
            1 => new CorrelationMetadata { CorrelationId = id },
            2 => new CorrelationMetadata { CorrelationId = "ok-1", ParentCorrelationId = id },
            _ => new CorrelationMetadata { CorrelationId = "ok-1", RootCorrelationId = id },
        };

        var refused = await client.PublishAsync("events.correlation.x", correlation);
        Assert.NotNull(refused);
        Assert.Equal(ErrorCode.InvalidMessage, refused.Code);
        Assert.Contains("printable ASCII", refused.Message);
        Assert.Equal(before + 1, await LimitAsync("correlation_id"));

        // The longest valid id passes.
        Assert.Null(await client.PublishAsync("events.correlation.x", new CorrelationMetadata { CorrelationId = new string('y', 128) }));
    }

    [Fact]
    public async Task An_rpc_call_with_a_malformed_or_duplicate_correlation_id_is_refused_and_counted()
    {
        await using var caller = await RawBus.ConnectAsync(Socket, "correlation-caller", Role.Client);
        var before = await LimitAsync("correlation_id");
        var malformed = await caller.CallAsync(HealthCheck(AccessControlAgentFixture.Spawned, "two words"));
        Assert.Equal(RpcErrorKind.InvalidOperation, malformed.Error.Kind);
        Assert.Contains("printable ASCII", malformed.Error.Message);
        Assert.Equal(before + 1, await LimitAsync("correlation_id"));

        var rejectedBefore = (await IpcProbe.SendAsync(fixture.Agent.IpcSocketPath, new IpcRequest { Status = new StatusRequest() })).Status.Rpc.Rejected;
        await caller.SendAsync(new Envelope { RpcRequest = HealthCheck(AccessControlAgentFixture.Spawned, "in-flight-once") });
        var duplicate = await caller.CallAsync(HealthCheck(AccessControlAgentFixture.Spawned, "in-flight-once"));
        Assert.Equal(RpcErrorKind.InvalidOperation, duplicate.Error.Kind);
        Assert.Contains("already in flight", duplicate.Error.Message);
        var rejectedAfter = (await IpcProbe.SendAsync(fixture.Agent.IpcSocketPath, new IpcRequest { Status = new StatusRequest() })).Status.Rpc.Rejected;
        Assert.Equal(rejectedBefore + 1, rejectedAfter);

        var first = await caller.ResponseAsync("in-flight-once"); // the original's answer
        Assert.Equal(RpcStatus.Ok, first.Status);
    }

    [Fact]
    public async Task Max_subscribers_refuses_the_next_subscription_of_any_connection_and_is_counted()
    {
        var before = await LimitAsync("broker.max_subscribers");
        var clients = new List<(RawBus Bus, List<uint> Ids)>();
        try
        {
            // Fill the broker, a few subscriptions per connection (within max_subscriptions_per_connection),
            // until one is refused: what the other tests and the collectors hold counts too.
            Error? refused = null;
            for (var i = 0; refused is null; i++)
            {
                Assert.True(i <= AccessControlAgentFixture.MaxSubscribers, $"{i} subscriptions accepted; broker.max_subscribers is {AccessControlAgentFixture.MaxSubscribers}");
                if (clients.Count == 0 || clients[^1].Ids.Count == AccessControlAgentFixture.MaxSubscriptionsPerConnection)
                {
                    clients.Add((await RawBus.ConnectAsync(Socket, $"total-sub-{clients.Count}", Role.Subscriber), []));
                }

                var reply = await clients[^1].Bus.SubscribeAsync($"events.total.s{i}");
                if (reply.BodyCase == Envelope.BodyOneofCase.SubscribeAck)
                {
                    clients[^1].Ids.Add(reply.SubscribeAck.SubscriptionId);
                }
                else
                {
                    refused = reply.Error;
                }
            }

            Assert.Equal(ErrorCode.LimitExceeded, refused.Code);
            Assert.Contains($"broker.max_subscribers ({AccessControlAgentFixture.MaxSubscribers}) reached: the broker already holds {AccessControlAgentFixture.MaxSubscribers} subscriptions", refused.Message);
            Assert.False(refused.Fatal);
            Assert.Equal(before + 1, await LimitAsync("broker.max_subscribers"));
            var broker = (await IpcProbe.SendAsync(fixture.Agent.IpcSocketPath, new IpcRequest { Status = new StatusRequest() })).Status.Broker;
            Assert.Equal((uint)AccessControlAgentFixture.MaxSubscribers, broker.MaxSubscribers);

            // One unsubscribe frees one place.
            var (bus, ids) = clients[0];
            Assert.Equal(Envelope.BodyOneofCase.UnsubscribeAck, (await bus.UnsubscribeAsync(ids[0])).BodyCase);
            ids.RemoveAt(0);
            var again = await bus.SubscribeAsync("events.total.again");
            Assert.Equal(Envelope.BodyOneofCase.SubscribeAck, again.BodyCase);
            ids.Add(again.SubscribeAck.SubscriptionId);
        }
        finally
        {
            // Unsubscribed before closing: the registry has released them when the ack arrives, so the
            // next test finds the broker below its limit.
            foreach (var (bus, ids) in clients)
            {
                foreach (var id in ids)
                {
                    await bus.UnsubscribeAsync(id);
                }

                await bus.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task A_frame_over_the_configured_max_frame_size_is_refused_and_counted_and_a_smaller_one_is_accepted()
    {
        await using var client = await RawBus.ConnectAsync(Socket, "big-frame", Role.Client);
        Assert.Equal((uint)AccessControlAgentFixture.MaxFrameSize, client.HelloReply.Welcome.MaxFrameSize);
        var before = await LimitAsync("broker.max_frame_size");

        // 1 KiB of payload: under the 2 KiB limit.
        Assert.Null(await client.PublishAsync("events.frames.small", payloadBytes: 1024));
        Assert.Equal(before, await LimitAsync("broker.max_frame_size"));

        // 4 KiB: over it. Refused from its length prefix, fatally.
        await client.SendAsync(new Envelope { RequestId = client.NextRequestId(), Publish = new Publish { Topic = "events.frames.big", Payload = Google.Protobuf.ByteString.CopyFrom(new byte[4096]) } });
        var error = (await client.ReadAsync()).Error;
        Assert.Equal(ErrorCode.FrameTooLarge, error.Code);
        Assert.Contains($"the maximum frame size is {AccessControlAgentFixture.MaxFrameSize} bytes (broker.max_frame_size)", error.Message);
        Assert.True(error.Fatal);
        Assert.Null(await client.TryReadAsync()); // closed
        Assert.Equal(before + 1, await LimitAsync("broker.max_frame_size"));
    }
}
