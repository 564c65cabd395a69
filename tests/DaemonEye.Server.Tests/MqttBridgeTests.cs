using System.Threading.Channels;
using DaemonEye.Configuration;
using DaemonEye.Gateway.Durability;
using DaemonEye.Gateway.Mqtt;
using DaemonEye.Grains;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace DaemonEye.Server.Tests;

/// <summary>
/// The MQTT listener's own parts (src/Gateway/Mqtt): the topic mapping, the mqtt options' validation,
/// durable consumer names, and a durable session's position under out-of-order PUBACKs, on a real durable log.
/// </summary>
public sealed class MqttBridgeTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("de-mqtt-").FullName;

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        Directory.Delete(_directory, recursive: true);
    }

    [Theory]
    [InlineData("events/process/start", "events.process.start")]
    [InlineData("control/collector/lifecycle", "control.collector.lifecycle")]
    public void Topic_names_map_slash_to_dot(string mqtt, string bus)
    {
        Assert.Equal(bus, MqttTopics.ToBusTopic(mqtt, out var error));
        Assert.Null(error);
        Assert.Equal(mqtt, MqttTopics.ToMqtt(bus));
    }

    [Theory]
    [InlineData("events/process/#", "events.process.#")]
    [InlineData("events/+/start", "events.+.start")]
    [InlineData("#", "#")]
    public void Filters_keep_their_wildcards(string mqtt, string bus) => Assert.Equal(bus, MqttTopics.ToBusPattern(mqtt, out _));

    [Theory]
    [InlineData("events/a.b", "'.'")]
    [InlineData("$SYS/broker/uptime", "'$'")]
    [InlineData("events/Process", "bus topic 'events.Process'")]
    [InlineData("events//x", "bus topic 'events..x'")]
    [InlineData("", "empty")]
    [InlineData("events/#", "bus topic 'events.#'")]
    public void Topics_without_a_bus_equivalent_are_refused_with_the_reason(string mqtt, string reason)
    {
        Assert.Null(MqttTopics.ToBusTopic(mqtt, out var error));
        Assert.Contains(reason, error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_shared_subscription_filter_is_refused() =>
        Assert.Null(MqttTopics.ToBusPattern("$share/group/events/#", out _));

    [Fact]
    public void The_defaults_are_valid_and_tcp_without_users_is_not()
    {
        Assert.Empty(new MqttOptions().Validate());
        var errors = new MqttOptions { TcpEnabled = true }.Validate().ToList();
        Assert.Contains(errors, e => e.Contains("mqtt.users is empty", StringComparison.Ordinal));
    }

    [Fact]
    public void Each_bad_value_is_named_with_what_is_allowed()
    {
        var options = new MqttOptions
        {
            TcpPort = 70000,
            TcpRole = "operator",
            MaxConnections = 0,
            MaxPendingMessages = 100,
            MaxInflight = 100,
            Users = new() { ["bad name"] = "short" },
        };
        var errors = options.Validate().ToList();
        Assert.Contains(errors, e => e.StartsWith("mqtt.tcp_port is 70000; allowed: 1 to 65535", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("mqtt.tcp_role is 'operator'; allowed: subscriber, client", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("mqtt.max_connections is 0", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("mqtt.max_inflight is 100", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("mqtt.users has user name 'bad name'", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("mqtt.users.bad name is 5 characters", StringComparison.Ordinal));
    }

    [Fact]
    public void Consumer_names_are_valid_distinct_per_filter_and_identity()
    {
        var a = MqttClient.ConsumerName("uid:1000", "siem/forwarder#1", "events/alert/#");
        var b = MqttClient.ConsumerName("uid:1000", "siem/forwarder#1", "control/collector/lifecycle");
        var c = MqttClient.ConsumerName("uid:1001", "siem/forwarder#1", "events/alert/#");
        var longest = MqttClient.ConsumerName("user:" + new string('u', 64), new string('x', 128), "#");
        Assert.Equal(3, new HashSet<string> { a, b, c }.Count);
        foreach (var name in new[] { a, b, c, longest })
        {
            Assert.InRange(name.Length, 1, 128);
            Assert.All(name, ch => Assert.True(char.IsAsciiLetterOrDigit(ch) || ch is '_' or '-' or '.', $"'{ch}' in {name}"));
        }
    }

    [Fact]
    public async Task A_durable_session_stores_the_highest_position_below_which_everything_was_acknowledged()
    {
        using var log = new DurableLog(new DurabilityOptions { Directory = _directory }, NullLogger<DurableLog>.Instance, new FakeTimeProvider());
        Assert.Equal(0UL, log.Attach("mqtt.test", "events.alert.#", ConsumerStart.NewOnly, 0, default, -1, out _));
        var delivered = Channel.CreateUnbounded<ulong>();
        var session = new MqttDurableSession(log, (row, stop) => delivered.Writer.WriteAsync(row.Sequence, stop).AsTask(), "mqtt.test", "events.alert.#", -1, 0, window: 3);
        log.Append(Batch("events.alert.a", 2)); // 1, 2
        log.Append(Batch("events.process.x", 1)); // 3: not durable-matching for this pattern
        log.Append(Batch("events.alert.b", 2)); // 4, 5
        session.Start();

        // The window holds three unacknowledged: 1, 2, 4.
        var window = new List<ulong> { await delivered.Reader.ReadAsync(), await delivered.Reader.ReadAsync(), await delivered.Reader.ReadAsync() };
        Assert.Equal([1UL, 2UL, 4UL], window);
        Assert.False(delivered.Reader.TryRead(out _));

        Assert.True(session.Acknowledge(2)); // 1 still out: nothing stored
        Assert.Equal(0UL, Acked(log));
        Assert.Equal(5UL, await delivered.Reader.ReadAsync());
        Assert.True(session.Acknowledge(1)); // 1 and 2 done, 4 out: stored 3 (3 did not match)
        Assert.Equal(3UL, Acked(log));
        Assert.False(session.Acknowledge(1)); // not in flight any more
        Assert.True(session.Acknowledge(5));
        Assert.Equal(3UL, Acked(log));
        Assert.True(session.Acknowledge(4));
        Assert.Equal(5UL, Acked(log));
        await session.StopAsync();
    }

    private static ulong Acked(DurableLog log) => log.Consumers().Single(c => c.Name == "mqtt.test").Acked;

    private static PublishBatch Batch(string topic, int count)
    {
        var one = Google.Protobuf.MessageExtensions.ToByteArray(new Protocol.V1.Publish { Topic = topic });
        var buffer = new List<byte>();
        var ends = new int[count];
        for (var i = 0; i < count; i++)
        {
            buffer.AddRange(one);
            ends[i] = buffer.Count;
        }

        return new PublishBatch(topic, [.. buffer], ends, count, 1);
    }
}
