using System.Text.Json;
using DaemonEye.Cli.Commands;
using DaemonEye.Protocol.Process.V1;
using DaemonEye.Protocol.V1;
using DaemonEye.Protocol.Wire;
using Google.Protobuf;

namespace DaemonEye.Client.Tests;

/// <summary>How the CLI prints procmond's events (subscribe) and snapshots (ps).</summary>
public sealed class ProcessEventOutputTests
{
    private static BusMessage Message(string topic, IMessage payload, string contentType)
    {
        var publish = new Publish
        {
            Topic = topic,
            Payload = payload.ToByteString(),
            Correlation = new CorrelationMetadata { CorrelationId = "c1", RootCorrelationId = "c1", SequenceNumber = 1 },
            TimestampUnixNanos = 42,
            ContentType = contentType,
        }.ToByteArray();
        Assert.True(PublishFrame.TryReadLayout(publish, out var layout));
        return new BusMessage(topic, 7, publish, layout);
    }

    private static readonly ProcessLifecycle Started = new()
    {
        Kind = ProcessLifecycleKind.Started,
        Process = new ProcessInfo { Pid = 4242, Ppid = 1, Name = "sleep", Comm = "sleep", Executable = "/usr/bin/sleep", CommandLine = { "sleep", "3" }, Uid = 1000, User = "alice", StartTimeUnixMs = 1_795_000_000_000, RssBytes = 2_000_000, Threads = 1 },
        ObservedUnixMs = 1_795_000_000_500,
        CollectorId = "procmond",
    };

    [Fact]
    public void Subscribe_json_holds_the_decoded_event_object()
    {
        var message = Message("events.process.lifecycle", Started, "application/x-protobuf; messageType=daemoneye.process.v1.ProcessLifecycle");
        using var buffer = new MemoryStream();

        SchemaAssert.Valid("subscribe", SubscribeCommand.ToJson(message, buffer));
        using var json = JsonDocument.Parse(SubscribeCommand.ToJson(message, buffer));

        var root = json.RootElement;
        Assert.Equal("events.process.lifecycle", root.GetProperty("topic").GetString());
        Assert.Equal("daemoneye.process.v1.ProcessLifecycle", root.GetProperty("event_type").GetString());
        Assert.False(root.TryGetProperty("payload_base64", out _));
        var e = root.GetProperty("event");
        Assert.Equal("PROCESS_LIFECYCLE_KIND_STARTED", e.GetProperty("kind").GetString());
        Assert.Equal(4242, e.GetProperty("process").GetProperty("pid").GetInt32());
        Assert.Equal("/usr/bin/sleep", e.GetProperty("process").GetProperty("executable").GetString());
        Assert.Equal(["sleep", "3"], e.GetProperty("process").GetProperty("command_line").EnumerateArray().Select(a => a.GetString()));
        Assert.Equal("procmond", e.GetProperty("collector_id").GetString());
    }

    [Fact]
    public void Subscribe_line_names_the_type_and_the_fields()
    {
        var line = SubscribeCommand.ToLine(Message("events.process.lifecycle", Started, "application/x-protobuf; messageType=daemoneye.process.v1.ProcessLifecycle"));

        Assert.StartsWith("events.process.lifecycle seq=7 cid=c1 ProcessLifecycle {", line, StringComparison.Ordinal);
        Assert.Contains("\"pid\":4242", line, StringComparison.Ordinal);
        Assert.Contains("\"executable\":\"/usr/bin/sleep\"", line, StringComparison.Ordinal);
        // 64-bit integers are JSON numbers, as in every other JSON the CLI prints.
        Assert.Contains("\"start_time_unix_ms\":1795000000000", line, StringComparison.Ordinal);
    }

    [Fact]
    public void Unknown_types_and_bytes_that_do_not_parse_stay_raw()
    {
        var unknown = Message("events.x.y", Started, "application/x-protobuf; messageType=acme.Thing");
        var garbage = new Publish { Topic = "events.process.lifecycle", Payload = ByteString.CopyFrom(0xFF, 0xFF, 0xFF), ContentType = "application/x-protobuf; messageType=daemoneye.process.v1.ProcessLifecycle" }.ToByteArray();
        Assert.True(PublishFrame.TryReadLayout(garbage, out var layout));

        Assert.Null(EventDecoder.TryDecode(unknown));
        Assert.Null(EventDecoder.TryDecode(Message("events.process.lifecycle", new ProcessLifecycle(), "application/x-protobuf; messageType=daemoneye.process.v1.Nope")));
        using var buffer = new MemoryStream();
        Assert.False(JsonDocument.Parse(SubscribeCommand.ToJson(unknown, buffer)).RootElement.TryGetProperty("event", out _));
        Assert.Null(EventDecoder.TryDecode(new BusMessage("events.process.lifecycle", 1, garbage, layout)));
    }

    [Fact]
    public void Ps_prints_a_table_and_a_json_array()
    {
        var snapshot = new ProcessSnapshot { Processes = { Started.Process, new ProcessInfo { Pid = 1, Name = "init", Uid = 0, ExeSha256 = new string('a', 64), RssBytes = 5 << 20, CpuPercent = 1.25 } } };

        using var writer = new StringWriter();
        var console = DaemonEye.Cli.Output.Terminal.Create(writer);
        DaemonEye.Cli.Output.Terminal.Show(console, PsCommand.Table(new DaemonEye.Cli.CliContext(new System.CommandLine.Option<string?>("--config"), console, TextWriter.Null), snapshot, DaemonEye.Cli.Output.OutputFormat.Table));
        var table = writer.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);

        Assert.Equal(["PID", "PPID", "USER", "NAME", "CPU%", "RSS", "EXE-SHA256"], table[0].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(["4242", "1", "alice", "sleep", "0.0", "1.9M", "-"], table[1].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(["1", "0", "0", "init", "1.3", "5.0M", "aaaaaaaaaaaa"], table[2].Split(' ', StringSplitOptions.RemoveEmptyEntries));

        SchemaAssert.Valid("ps", PsCommand.ToJson(snapshot));
        using var json = JsonDocument.Parse(PsCommand.ToJson(snapshot));
        var rows = json.RootElement.EnumerateArray().ToList();
        Assert.Equal(2, rows.Count);
        Assert.Equal(4242, rows[0].GetProperty("pid").GetInt32());
        Assert.Equal("alice", rows[0].GetProperty("user").GetString());
        Assert.Equal("sleep", rows[0].GetProperty("comm").GetString());
        Assert.Equal(2_000_000, rows[0].GetProperty("rss_bytes").GetInt64());
        Assert.Equal(new string('a', 64), rows[1].GetProperty("exe_sha256").GetString());
    }
}
