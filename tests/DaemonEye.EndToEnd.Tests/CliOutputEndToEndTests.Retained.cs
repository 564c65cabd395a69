using System.Text;
using System.Text.Json;
using DaemonEye.Client;
using DaemonEye.Client.Tests;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>The durable log as the CLI shows it: <c>streams</c>, and <c>subscribe|alerts tail --last N</c>.</summary>
public sealed partial class CliOutputEndToEndTests
{
    [Fact]
    public async Task Streams_lists_the_durable_log_and_its_consumers_as_aligned_columns_or_json_matching_its_schema()
    {
        var name = "cli-streams-" + Guid.NewGuid().ToString("N")[..8];
        await using var client = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = Agent.SocketPath, ClientId = "streams-e2e" });
        await using var subscription = await client.SubscribeDurableAsync("control.collector.lifecycle", name, DurableStartPosition.NewOnly);

        var (code, json, error) = await PipeAsync("streams", "-o", "json");
        Assert.True(code == 0, error);
        SchemaAssert.Valid("streams", json);
        using (var document = JsonDocument.Parse(json))
        {
            // procmond's start was logged: the shipped durable topics are on in the test agent too.
            Assert.Contains("control.collector.lifecycle", document.RootElement.GetProperty("patterns").EnumerateArray().Select(p => p.GetString()));
            Assert.True(document.RootElement.GetProperty("messages").GetUInt64() > 0, json);
            var consumer = Assert.Single(document.RootElement.GetProperty("consumers").EnumerateArray(), c => c.GetProperty("name").GetString() == name);
            Assert.Equal("control.collector.lifecycle", consumer.GetProperty("pattern").GetString());
            Assert.True(consumer.GetProperty("attached").GetBoolean());

            // The SDK asks for its buffer's size as the window, under the agent's 10,000.
            Assert.Equal(new BusClientOptions().SubscriptionBufferSize, consumer.GetProperty("max_in_flight").GetInt32());
        }

        var (tableCode, table, tableError) = await PipeAsync("streams");
        Assert.True(tableCode == 0, tableError);
        var lines = table.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("durable topics: ", lines[0], StringComparison.Ordinal);
        Assert.StartsWith("log: ", lines[1], StringComparison.Ordinal);
        Assert.Equal(["CONSUMER", "PATTERN", "ACKED", "LAG", "IN", "FLIGHT", "ATTACHED"], lines[2].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        var row = Assert.Single(lines, l => l.StartsWith(name + " ", StringComparison.Ordinal));
        Assert.Equal(lines[2].IndexOf("PATTERN", StringComparison.Ordinal), row.IndexOf("control.collector.lifecycle", StringComparison.Ordinal));
        Assert.EndsWith(" yes", row, StringComparison.Ordinal);
        Assert.Contains($"/{new BusClientOptions().SubscriptionBufferSize} ", row, StringComparison.Ordinal);
        Assert.DoesNotContain('\u001b', table);
    }

    [Fact]
    public async Task Subscribe_last_prints_the_last_retained_messages_then_new_ones_and_refuses_a_pattern_nothing_is_retained_for()
    {
        var topic = "events.demo.retained." + Guid.NewGuid().ToString("N")[..8];
        await using var client = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = Agent.SocketPath, ClientId = "retained-publisher" });
        foreach (var text in new[] { "m1", "m2", "m3" })
        {
            await client.PublishAsync(topic, Encoding.UTF8.GetBytes(text));
        }

        await client.FlushAsync();

        // The last two retained, oldest first; then one published once they are printed, live.
        using (var subscriber = new CliProcess(Agent.SocketPath, "subscribed to", "subscribe", topic, "--last", "2", "--count", "3", "--json"))
        {
            await subscriber.StdoutLineAsync(l => l.Contains("\"m3\"", StringComparison.Ordinal)).WaitAsync(Patience);
            await client.PublishAsync(topic, "m4"u8.ToArray());
            await client.FlushAsync();
            Assert.True(await subscriber.WaitAsync(Patience) == 0, subscriber.Stderr);
            Assert.All(subscriber.Stdout, l => SchemaAssert.Valid("subscribe", l));
            Assert.Equal(["m2", "m3", "m4"], subscriber.Stdout.Select(l => JsonDocument.Parse(l).RootElement.GetProperty("payload").GetString()));
        }

        // The agent's own lifecycle records are retained too, decoded.
        var (lifecycleCode, lifecycle, lifecycleError) = await PipeAsync("subscribe", "control.collector.lifecycle", "--last", "1", "--count", "1", "--json");
        Assert.True(lifecycleCode == 0, lifecycleError);
        SchemaAssert.Valid("subscribe", lifecycle.Trim());
        using (var record = JsonDocument.Parse(lifecycle))
        {
            Assert.Equal("daemoneye.collector.v1.LifecycleEvent", record.RootElement.GetProperty("event_type").GetString());
        }

        // Only durable topics are retained: any other pattern is refused with the reason.
        var (code, output, error) = await PipeAsync("subscribe", "events.demo.not-kept.#", "--last", "1");
        Assert.Equal(1, code);
        Assert.Equal(string.Empty, output);
        Assert.Contains("InvalidOperation: nothing is retained for 'events.demo.not-kept.#': the agent keeps only the durable topics (durability.topics: events.alert.#, control.collector.lifecycle, events.demo.retained.#)", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Alerts_tail_last_prints_the_last_retained_alert_matching_its_schema()
    {
        var alert = new DaemonEye.Protocol.Alert.V1.Alert { AlertId = Guid.NewGuid().ToString("N"), RuleId = "retained-test", RuleName = "Retained test", Severity = "low", RaisedUnixMs = (ulong)DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() };
        await using (var client = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = Agent.SocketPath, ClientId = "alert-publisher" }))
        {
            await client.PublishAsync("events.alert.low", Google.Protobuf.MessageExtensions.ToByteArray(alert), new PublishOptions { ContentType = "application/x-protobuf; messageType=" + DaemonEye.Protocol.Alert.V1.Alert.Descriptor.FullName });
            await client.FlushAsync();
        }

        var (code, output, error) = await PipeAsync("alerts", "tail", "--last", "1", "--count", "1", "--json");

        Assert.True(code == 0, error);
        var line = Assert.Single(output.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        SchemaAssert.Valid("alerts", line);
        using var json = JsonDocument.Parse(line);
        Assert.Equal(alert.AlertId, json.RootElement.GetProperty("alert_id").GetString());
        Assert.Equal("events.alert.low", json.RootElement.GetProperty("topic").GetString());
    }
}
