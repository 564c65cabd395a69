using System.Text;
using DaemonEye.Client;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// The MQTT listener (docs/mqtt.md) against Debian's mosquitto_sub and mosquitto_pub: bus events reach
/// mosquitto_sub on the Unix socket, mosquitto_pub reaches native subscribers, a persistent QoS 1
/// session resumes after kill -9 of the agent without loss, the bus's access rules hold for MQTT
/// (a collector-only topic stays collector-only), and TCP needs a configured user.
/// </summary>
public sealed class MqttEndToEndTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(120);

    private static readonly Dictionary<string, string> Durable = new() { ["DAEMONEYE_DURABILITY__DIRECTORY"] = "durable" };

    private static string MqttSocket(AgentProcess agent) => Path.Combine(Path.GetDirectoryName(agent.SocketPath)!, "mqtt.sock");

    private static BusClientOptions Options(AgentProcess agent, string id) => new() { SocketPath = agent.SocketPath, ClientId = id, AutoReconnect = false };

    /// <summary>Waits for the agent to log that MQTT client <paramref name="clientId"/> subscribed (call before starting it).</summary>
    private static Task<string> Subscribed(AgentProcess agent, string clientId) =>
        agent.WaitForLineAsync(l => l.Contains($"({clientId}) subscribed to", StringComparison.Ordinal));

    [Fact]
    public async Task Mosquitto_sub_on_the_unix_socket_prints_the_events_published_on_the_bus()
    {
        using var patience = new CancellationTokenSource(Patience);
        var token = patience.Token;
        await using var agent = await AgentProcess.StartAsync();
        var subscribed = Subscribed(agent, "e2e-process-sub");
        using var sub = MosquittoProcess.Sub("--unix", MqttSocket(agent), "-i", "e2e-process-sub", "-t", "events/process/#", "-v");
        await subscribed.WaitAsync(token);

        await using (var publisher = await BusClient.ConnectAsync(Options(agent, "e2e-publisher"), token))
        {
            await publisher.PublishAsync("events.process.start", Encoding.UTF8.GetBytes("pid=100"), cancellationToken: token);
            await publisher.PublishAsync("events.network.connect", Encoding.UTF8.GetBytes("not for this filter"), cancellationToken: token);
            await publisher.PublishAsync("events.process.exit", Encoding.UTF8.GetBytes("pid=100"), cancellationToken: token);
            await publisher.FlushAsync(token);
        }

        await sub.WaitForLinesAsync(l => l.Count >= 2, token);
        // The bus orders messages per topic, not across topics.
        Assert.Equal(["events/process/exit pid=100", "events/process/start pid=100"], sub.Lines.Order(StringComparer.Ordinal));
        var metrics = await MetricsReader.SnapshotAsync(agent);
        Assert.True(MetricsReader.ValueOrZero(metrics, "daemoneye.mqtt.messages.out") >= 2);
        Assert.Equal(1, MetricsReader.ValueOrZero(metrics, "daemoneye.mqtt.connections"));
    }

    [Fact]
    public async Task Mosquitto_pub_on_the_unix_socket_reaches_a_native_subscriber()
    {
        using var patience = new CancellationTokenSource(Patience);
        var token = patience.Token;
        await using var agent = await AgentProcess.StartAsync();
        await using var native = await BusClient.ConnectAsync(Options(agent, "e2e-native"), token);
        var subscription = await native.SubscribeAsync("events.file.#", token);

        var (code, stderr) = await MosquittoProcess.PublishAsync(token, "--unix", MqttSocket(agent), "-t", "events/file/created", "-m", "/etc/passwd", "-q", "1");
        Assert.True(code == 0, $"mosquitto_pub exited {code}: {stderr}");
        var (code5, stderr5) = await MosquittoProcess.PublishAsync(token, "-V", "mqttv5", "--unix", MqttSocket(agent), "-t", "events/file/deleted", "-m", "/tmp/x", "-q", "0");
        Assert.True(code5 == 0, $"mosquitto_pub (MQTT 5) exited {code5}: {stderr5}");

        var first = await subscription.Reader.ReadAsync(token);
        var second = await subscription.Reader.ReadAsync(token);
        Assert.Equal(("events.file.created", "/etc/passwd"), (first.Topic, Encoding.UTF8.GetString(first.Payload.Span)));
        Assert.Equal(("events.file.deleted", "/tmp/x"), (second.Topic, Encoding.UTF8.GetString(second.Payload.Span)));
        Assert.Equal(2, MetricsReader.ValueOrZero(await MetricsReader.SnapshotAsync(agent), "daemoneye.mqtt.messages.in"));
    }

    [Fact]
    public async Task Mosquitto_pub_to_a_collector_only_topic_is_refused_counted_and_logged()
    {
        using var patience = new CancellationTokenSource(Patience);
        var token = patience.Token;
        await using var agent = await AgentProcess.StartAsync();
        await using var native = await BusClient.ConnectAsync(Options(agent, "e2e-watch"), token);
        var heartbeats = await native.SubscribeAsync("control.health.#", token);
        var markers = await native.SubscribeAsync("events.marker.#", token);
        var socket = MqttSocket(agent);
        var denied = agent.WaitForLineAsync(l => l.Contains("denied by rule client.publish_control", StringComparison.Ordinal));

        // A forged heartbeat for procmond: MQTT 3.1.1 cannot carry a refusal, so the connection is closed.
        var (code, stderr) = await MosquittoProcess.PublishAsync(token, "--unix", socket, "-t", "control/health/heartbeat/procmond", "-m", "forged", "-q", "1");
        Assert.NotEqual(0, code);
        Assert.Contains("connection was lost", stderr, StringComparison.OrdinalIgnoreCase);
        await denied.WaitAsync(token);

        // MQTT 5 hears the reason in its PUBACK.
        var (_, stderr5) = await MosquittoProcess.PublishAsync(token, "-V", "mqttv5", "--unix", socket, "-t", "control/health/heartbeat/procmond", "-m", "forged", "-q", "1");
        Assert.Contains("Not authorized", stderr5, StringComparison.Ordinal);

        // An invalid bus topic is refused too (upper case is not a bus topic).
        var (badCode, _) = await MosquittoProcess.PublishAsync(token, "--unix", socket, "-t", "events/Process", "-m", "x", "-q", "1");
        Assert.NotEqual(0, badCode);

        var (okCode, okErr) = await MosquittoProcess.PublishAsync(token, "--unix", socket, "-t", "events/marker/done", "-m", "after", "-q", "1");
        Assert.True(okCode == 0, okErr);
        Assert.Equal("events.marker.done", (await markers.Reader.ReadAsync(token)).Topic);
        Assert.False(heartbeats.Reader.TryRead(out var forged), $"a forged message reached the bus: {forged?.Topic}");

        var metrics = await MetricsReader.SnapshotAsync(agent);
        Assert.Equal(2, MetricsReader.ValueOrZero(metrics, "daemoneye.mqtt.publish.refused", ("reason", "access_rule")));
        Assert.Equal(1, MetricsReader.ValueOrZero(metrics, "daemoneye.mqtt.publish.refused", ("reason", "invalid_topic")));
        Assert.Equal(2, MetricsReader.ValueOrZero(metrics, "daemoneye.bus.denied", ("rule", "client.publish_control")));
    }

    [Fact]
    public async Task A_persistent_qos1_session_resumes_after_kill_9_of_the_agent_without_loss()
    {
        using var patience = new CancellationTokenSource(Patience);
        var token = patience.Token;
        var first = await AgentProcess.StartAsync(Durable);
        AgentProcess? second = null;
        try
        {
            // Receives 50 of 200 alerts, acknowledging each (PUBACK), and disconnects.
            var subscribed = Subscribed(first, "siem-mqtt");
            var gone = first.WaitForLineAsync(l => l.Contains("client siem-mqtt disconnected", StringComparison.Ordinal));
            using (var early = MosquittoProcess.Sub("--unix", MqttSocket(first), "-i", "siem-mqtt", "-c", "-q", "1", "-t", "events/alert/#", "-C", "50"))
            {
                await subscribed.WaitAsync(token);
                await PublishAlertsAsync(first, 0, 200, token);
                Assert.Equal(0, await early.WaitForExitAsync(token));
                Assert.Equal(Enumerable.Range(0, 50).Select(Alert), early.Lines);
            }

            // Its PUBACKs are all read (and stored) once the agent has seen it go; then kill -9.
            await gone.WaitAsync(token);

            await first.KillAgentOnlyAsync();
            second = await AgentProcess.StartAsync(Durable, reuse: first);
            await PublishAlertsAsync(second, 200, 100, token);

            // The same client id and a persistent session: everything not acknowledged, in order, then live.
            subscribed = Subscribed(second, "siem-mqtt");
            using var resumed = MosquittoProcess.Sub("--unix", MqttSocket(second), "-i", "siem-mqtt", "-c", "-q", "1", "-t", "events/alert/#");
            await subscribed.WaitAsync(token);
            await resumed.WaitForLinesAsync(l => l.Contains(Alert(299)), token);
            await PublishAlertsAsync(second, 300, 1, token);
            await resumed.WaitForLinesAsync(l => l.Contains(Alert(300)), token);

            var lines = resumed.Lines;
            var start = int.Parse(lines[0]["alert-".Length..], System.Globalization.CultureInfo.InvariantCulture);
            // mosquitto_sub acknowledges each message as it prints it; only the last ones before its exit may come again.
            Assert.InRange(start, 45, 50);
            Assert.Equal(Enumerable.Range(start, 301 - start).Select(Alert), lines);

            await using var client = await BusClient.ConnectAsync(Options(second, "e2e-streams"), token);
            var streams = await client.GetStreamsAsync(token);
            var consumer = Assert.Single(streams.Consumers, c => c.Name.StartsWith("mqtt.", StringComparison.Ordinal));
            Assert.Contains("siem-mqtt", consumer.Name, StringComparison.Ordinal);
            Assert.Equal("events.alert.#", consumer.Pattern);
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
    public async Task Tcp_needs_a_configured_user_and_its_password_and_gives_it_the_configured_role()
    {
        using var patience = new CancellationTokenSource(Patience);
        var token = patience.Token;
        const string password = "e2e-password-0123456789";
        var environment = new Dictionary<string, string>
        {
            ["DAEMONEYE_MQTT__TCP_ENABLED"] = "true",
            ["DAEMONEYE_MQTT__TCP_PORT"] = "0",
            ["DAEMONEYE_MQTT__USERS__dashboard"] = password,
        };
        await using var agent = await AgentProcess.StartAsync(environment);
        var listening = await agent.WaitForLineAsync(l => l.Contains("MQTT listening on", StringComparison.Ordinal), includeEarlier: true);
        var port = System.Text.RegularExpressions.Regex.Match(listening, @"TCP 127\.0\.0\.1:(\d+)").Groups[1].Value;
        Assert.NotEmpty(port);

        var (wrong, wrongErr) = await MosquittoProcess.PublishAsync(token, "-h", "127.0.0.1", "-p", port, "-u", "dashboard", "-P", "not-the-password-at-all", "-t", "events/x", "-m", "1", "-q", "1");
        Assert.NotEqual(0, wrong);
        Assert.Contains("bad user name or password", wrongErr, StringComparison.OrdinalIgnoreCase);
        var (anonymous, _) = await MosquittoProcess.PublishAsync(token, "-h", "127.0.0.1", "-p", port, "-t", "events/x", "-m", "1", "-q", "1");
        Assert.NotEqual(0, anonymous);

        // The right password: admitted with tcp_role's default, subscriber, which may read but not publish.
        var (_, readOnly) = await MosquittoProcess.PublishAsync(token, "-V", "mqttv5", "-h", "127.0.0.1", "-p", port, "-u", "dashboard", "-P", password, "-t", "events/x", "-m", "1", "-q", "1");
        Assert.Contains("Not authorized", readOnly, StringComparison.Ordinal);
        var subscribed = Subscribed(agent, "e2e-dashboard");
        using var sub = MosquittoProcess.Sub("-h", "127.0.0.1", "-p", port, "-u", "dashboard", "-P", password, "-i", "e2e-dashboard", "-t", "events/#", "-v");
        await subscribed.WaitAsync(token);
        await using (var publisher = await BusClient.ConnectAsync(Options(agent, "e2e-tcp-publisher"), token))
        {
            await publisher.PublishAsync("events.process.start", Encoding.UTF8.GetBytes("over-tcp"), cancellationToken: token);
            await publisher.FlushAsync(token);
        }

        await sub.WaitForLinesAsync(l => l.Count >= 1, token);
        Assert.Equal("events/process/start over-tcp", sub.Lines[0]);
        var metrics = await MetricsReader.SnapshotAsync(agent);
        Assert.Equal(2, MetricsReader.ValueOrZero(metrics, "daemoneye.mqtt.connections.refused", ("reason", "bad_user_name_or_password")));
        Assert.Contains("subscriber.publish", agent.Log, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Tcp_enabled_without_users_is_a_configuration_error_naming_the_keys()
    {
        var (code, output) = await AgentProcess.RunToExitAsync(new Dictionary<string, string> { ["DAEMONEYE_MQTT__TCP_ENABLED"] = "true" }, [], TimeSpan.FromSeconds(60));
        Assert.NotEqual(0, code);
        Assert.Contains("mqtt.tcp_enabled is true but mqtt.users is empty", output, StringComparison.Ordinal);
    }

    private static string Alert(int i) => $"alert-{i}";

    private static async Task PublishAlertsAsync(AgentProcess agent, int from, int count, CancellationToken cancellationToken)
    {
        await using var publisher = await BusClient.ConnectAsync(Options(agent, $"alerter-{from}"), cancellationToken);
        for (var i = from; i < from + count; i++)
        {
            await publisher.PublishAsync("events.alert.e2e", Encoding.UTF8.GetBytes(Alert(i)), cancellationToken: cancellationToken);
        }

        await publisher.FlushAsync(cancellationToken);
    }
}
