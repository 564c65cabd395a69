using System.CommandLine;
using System.Text.Json;
using DaemonEye.Cli;
using DaemonEye.Cli.Commands;
using DaemonEye.Cli.Output;
using DaemonEye.Protocol.Alert.V1;
using DaemonEye.Protocol.Filesystem.V1;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.Network.V1;
using DaemonEye.Protocol.Process.V1;
using DaemonEye.Protocol.V1;
using DaemonEye.Protocol.Wire;
using Google.Protobuf;
using Microsoft.Extensions.Time.Testing;
using Spectre.Console.Testing;
using Diagnostics = DaemonEye.Protocol.Collector.V1.Diagnostics;

namespace DaemonEye.Client.Tests;

/// <summary>
/// The CLI's output layer without an agent: colour on a terminal and none on a pipe (Spectre's
/// TestConsole as the terminal), relative and absolute times, the process tree, JSON types and schemas.
/// </summary>
public sealed class CliOutputTests
{
    private static readonly DateTimeOffset Now = new(2026, 12, 5, 9, 0, 0, TimeSpan.Zero);

    private static readonly CollectorStatus Running = new()
    {
        Id = "procmond",
        State = CollectorState.Running,
        Health = CollectorHealth.Healthy,
        Pid = 4242,
        LastHeartbeatUnixNanos = (ulong)(Now.AddSeconds(-3) - DateTimeOffset.UnixEpoch).Ticks * 100,
        Reason = "registered on the bus",
    };

    private static readonly CollectorStatus Crashed = new() { Id = "netmond", State = CollectorState.Failed, Health = CollectorHealth.Unhealthy, Restarts = 5, Reason = "exit 127" };

    private static CliContext Context(Spectre.Console.IAnsiConsole console) =>
        new(new Option<string?>("--config"), console, TextWriter.Null) { Clock = new FakeTimeProvider(Now) };

    private static TestConsole TerminalConsole()
    {
        var console = new TestConsole().Interactive().EmitAnsiSequences().Width(160);
        console.Profile.Capabilities.Unicode = true;
        return console;
    }

    [Fact]
    public void A_terminal_gets_colour_symbols_and_relative_times()
    {
        using var console = TerminalConsole();

        console.Write(CollectorViews.Table(Context(console), [Running, Crashed], OutputFormat.Table));

        var text = console.Output;
        Assert.Matches("\u001b\\[[0-9;]+m✔ Running", text);
        Assert.Matches("\u001b\\[[0-9;]+m✘ Failed", text);
        Assert.Matches("\u001b\\[[0-9;]+m✔ Healthy", text);
        Assert.Contains("3 s ago", text, StringComparison.Ordinal);
        Assert.DoesNotContain("2026-12-05T", text, StringComparison.Ordinal);
    }

    [Fact]
    public void A_pipe_gets_plain_aligned_columns_and_absolute_times()
    {
        using var writer = new StringWriter();
        var console = Terminal.Create(writer);

        console.Show(CollectorViews.Table(Context(console), [Running, Crashed], OutputFormat.Table));

        var lines = writer.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.DoesNotContain('\u001b', writer.ToString());
        Assert.DoesNotContain("✔", writer.ToString(), StringComparison.Ordinal);
        Assert.Equal(["ID", "STATE", "HEALTH", "PID", "RESTARTS", "LAST", "HEARTBEAT", "REASON"], lines[0].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(["procmond", "Running", "Healthy", "4242", "0", "2026-12-05T08:59:57.000Z", "registered", "on", "the", "bus"], lines[1].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(["netmond", "Failed", "Unhealthy", "-", "5", "-", "exit", "127"], lines[2].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(lines[1].IndexOf("Running", StringComparison.Ordinal), lines[2].IndexOf("Failed", StringComparison.Ordinal));
        Assert.All(lines, l => Assert.Equal(l.TrimEnd(), l));
    }

    [Fact]
    public void A_terminal_console_without_ansi_prints_no_escape_sequences()
    {
        // NO_COLOR or TERM=dumb on a terminal: interactive (tables with borders) but no colour.
        using var console = new TestConsole().Interactive();

        console.Write(CollectorViews.Table(Context(console), [Running], OutputFormat.Table));

        Assert.DoesNotContain('\u001b', console.Output);
        Assert.Contains("Running", console.Output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(null, "xterm-256color", true)]
    [InlineData("", "xterm", true)]
    [InlineData("1", "xterm-256color", false)]
    [InlineData(null, "dumb", false)]
    public void NO_COLOR_and_a_dumb_terminal_turn_colour_off(string? noColor, string? term, bool color) =>
        Assert.Equal(color, Terminal.WantsColor(noColor, term));

    [Theory]
    [InlineData(0.2, "now")]
    [InlineData(3, "3 s ago")]
    [InlineData(150, "2 min ago")]
    [InlineData(7200, "2 h ago")]
    [InlineData(3 * 86400, "3 d ago")]
    [InlineData(-2, "in 2 s")]
    public void Relative_times_use_the_largest_unit_that_fits(double seconds, string expected) =>
        Assert.Equal(expected, Styles.Ago(TimeSpan.FromSeconds(seconds)));

    private static readonly ProcessSnapshot Tree = new()
    {
        CollectorId = "procmond",
        Processes =
        {
            new ProcessInfo { Pid = 12, Ppid = 1, Name = "sshd", User = "root" },
            new ProcessInfo { Pid = 1, Ppid = 0, Name = "init", User = "root" },
            new ProcessInfo { Pid = 11, Ppid = 10, Name = "sleep", User = "alice" },
            new ProcessInfo { Pid = 10, Ppid = 1, Name = "bash", User = "alice" },
            new ProcessInfo { Pid = 99, Ppid = 50, Name = "orphan", User = "bob" },
        },
    };

    [Fact]
    public void Ps_tree_on_a_pipe_indents_children_under_their_parent()
    {
        using var writer = new StringWriter();
        var console = Terminal.Create(writer);

        console.Show(ProcessTree.Render(console, Tree));

        Assert.Equal(
            ["1 init (root, 0.0% cpu, 0K)", "  10 bash (alice, 0.0% cpu, 0K)", "    11 sleep (alice, 0.0% cpu, 0K)", "  12 sshd (root, 0.0% cpu, 0K)", "99 orphan (bob, 0.0% cpu, 0K)"],
            writer.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public void Ps_tree_json_nests_children_and_matches_its_schema()
    {
        var json = ProcessTree.ToJson(Tree);

        SchemaAssert.Valid("ps-tree", json);
        using var document = JsonDocument.Parse(json);
        var roots = document.RootElement.EnumerateArray().ToList();
        Assert.Equal([1u, 99u], roots.Select(r => r.GetProperty("pid").GetUInt32()));
        var bash = roots[0].GetProperty("children").EnumerateArray().First();
        Assert.Equal(10u, bash.GetProperty("pid").GetUInt32());
        Assert.Equal(11u, Assert.Single(bash.GetProperty("children").EnumerateArray()).GetProperty("pid").GetUInt32());
    }

    [Fact]
    public void Ps_tree_on_a_terminal_is_a_tree_with_guides()
    {
        using var console = TerminalConsole();

        console.Write(ProcessTree.Render(console, Tree));

        var lines = console.Lines.Select(l => System.Text.RegularExpressions.Regex.Replace(l, "\u001b\\[[0-9;]*m", string.Empty)).ToList();
        Assert.Contains(lines, l => l.StartsWith("├── 1 init", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("│   ├── 10 bash", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("│   │   └── 11 sleep", StringComparison.Ordinal));
    }

    private static BusMessage Message(string topic, IMessage payload)
    {
        var publish = new Publish
        {
            Topic = topic,
            Payload = payload.ToByteString(),
            Correlation = new CorrelationMetadata { CorrelationId = "c1", RootCorrelationId = "c1", SequenceNumber = ulong.MaxValue - 1 },
            TimestampUnixNanos = 1_796_456_488_609_551_200,
            ContentType = $"application/x-protobuf; messageType={payload.Descriptor.FullName}",
        }.ToByteArray();
        Assert.True(PublishFrame.TryReadLayout(publish, out var layout));
        return new BusMessage(topic, 7, publish, layout);
    }

    [Fact]
    public void Subscribe_json_decodes_network_and_filesystem_events_with_64_bit_numbers_as_numbers()
    {
        var connection = new ConnectionEvent
        {
            Kind = ConnectionEventKind.Closed,
            Connection = new Connection { Cookie = ulong.MaxValue - 3, Inode = 123_456, BytesSent = 5_000_000_000, FirstSeenUnixMs = 1_796_456_488_609 },
            DurationMs = 1500,
            ObservedUnixMs = 1_796_456_490_109,
            CollectorId = "netmond",
        };
        var file = new FileEvent { Kind = FileEventKind.Modified, Path = "/etc/passwd", TimeUnixNanos = 1_796_456_488_609_551_200, Size = 3_000_000_000, Sequence = 9, CollectorId = "fsmond" };
        using var buffer = new MemoryStream();

        var network = SubscribeCommand.ToJson(Message("events.network.connection", connection), buffer);
        SchemaAssert.Valid("subscribe", network);
        var filesystem = SubscribeCommand.ToJson(Message("events.filesystem.change", file), buffer);
        SchemaAssert.Valid("subscribe", filesystem);

        using (var json = JsonDocument.Parse(network))
        {
            Assert.Equal("daemoneye.network.v1.ConnectionEvent", json.RootElement.GetProperty("event_type").GetString());
            var e = json.RootElement.GetProperty("event");
            Assert.Equal(ulong.MaxValue - 3, e.GetProperty("connection").GetProperty("cookie").GetUInt64());
            Assert.Equal(5_000_000_000UL, e.GetProperty("connection").GetProperty("bytes_sent").GetUInt64());
            Assert.Equal("CONNECTION_EVENT_KIND_CLOSED", e.GetProperty("kind").GetString());
            Assert.Equal(ulong.MaxValue - 1, json.RootElement.GetProperty("publisher_sequence").GetUInt64());
        }

        using (var json = JsonDocument.Parse(filesystem))
        {
            var e = json.RootElement.GetProperty("event");
            Assert.Equal(JsonValueKind.Number, e.GetProperty("time_unix_nanos").ValueKind);
            Assert.Equal(3_000_000_000UL, e.GetProperty("size").GetUInt64());
            Assert.Equal("/etc/passwd", e.GetProperty("path").GetString());
        }
    }

    [Fact]
    public void Subscribe_prints_events_over_several_lines_on_a_terminal_leaving_defaults_out()
    {
        var file = new FileEvent { Kind = FileEventKind.Modified, Path = "/etc/passwd", Size = 3_000_000_000, CollectorId = "fsmond" };
        using var console = new TestConsole().Interactive().Width(120);

        console.Write(EventView.Render(Message("events.filesystem.change", file), EventDecoder.TryDecode(Message("events.filesystem.change", file)), null, Now));

        var lines = console.Lines.ToList();
        Assert.StartsWith("events.filesystem.change #7 · ", lines[0], StringComparison.Ordinal);
        Assert.Equal("  FileEvent", lines[1]);
        Assert.Contains("  path: /etc/passwd", lines);
        Assert.Contains("  size: 3000000000", lines);
        Assert.DoesNotContain(lines, l => l.Contains("new_path", StringComparison.Ordinal));
    }

    private static readonly RulesListResponse Rules = new()
    {
        Directory = "/etc/daemoneye/rules",
        IntervalSeconds = 60,
        Rules =
        {
            new RuleInfo { Id = "reverse-shell", Kind = "snapshot", Severity = "critical", State = "ready", Tables = { "connections", "processes" }, TaskTypes = { "network.snapshot", "process.snapshot" }, Name = "Reverse shell", File = "/etc/daemoneye/rules/reverse-shell.yaml", Line = 5 },
            new RuleInfo { Id = "x", Kind = "event", Severity = "low", State = "waiting", WaitingFor = { "network.snapshot" }, Tables = { "process_events" }, Name = "A much longer rule name than the other", File = "x.yaml", Line = 12 },
        },
    };

    [Fact]
    public void Rules_list_on_a_pipe_is_columns_that_start_at_the_same_place_on_every_line()
    {
        using var writer = new StringWriter();
        var console = Terminal.Create(writer);

        console.Show(CoordinationCommands.RulesView(Context(console), Rules, OutputFormat.Table));

        var lines = writer.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("rules directory /etc/daemoneye/rules; run every 60 s", lines[0]);
        Assert.Equal(["ID", "KIND", "SEVERITY", "STATE", "TABLES", "NEEDS", "NAME", "FILE"], lines[1].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        string[][] cells =
        [
            ["ID", "KIND", "SEVERITY", "STATE", "TABLES", "NEEDS", "NAME", "FILE"],
            ["reverse-shell", "snapshot", "critical", "ready", "connections,processes", "network.snapshot,process.snapshot", "Reverse shell", "/etc/daemoneye/rules/reverse-shell.yaml:5"],
            ["x", "event", "low", "waiting for network.snapshot", "process_events", "-", "A much longer rule name than the other", "x.yaml:12"],
        ];
        for (var column = 0; column < cells[0].Length; column++)
        {
            var at = lines[1].IndexOf(cells[0][column], StringComparison.Ordinal);
            Assert.Equal(at, lines[2].IndexOf(cells[1][column], at, StringComparison.Ordinal));
            Assert.Equal(at, lines[3].IndexOf(cells[2][column], at, StringComparison.Ordinal));
        }

        Assert.DoesNotContain('\u001b', writer.ToString());
    }

    [Fact]
    public void Rules_list_on_a_terminal_colours_each_severity()
    {
        using var console = TerminalConsole();

        console.Write(CoordinationCommands.RulesView(Context(console), Rules, OutputFormat.Table));

        Assert.Matches("\u001b\\[[0-9;]+mcritical\u001b\\[0m", console.Output);
        Assert.Matches("\u001b\\[[0-9;]+mlow\u001b\\[0m", console.Output);
    }

    [Theory]
    [InlineData("critical", "CRITICAL")]
    [InlineData("high", "HIGH")]
    [InlineData("medium", "MEDIUM")]
    public void Alerts_tail_colours_the_severity_on_a_terminal_and_not_on_a_pipe(string severity, string word)
    {
        var alert = new Alert { RuleId = "r1", RuleName = "Rule one", Severity = severity, RaisedUnixMs = 1_796_456_488_609, TaskId = "t1", EvaluationCorrelationId = "e1", Fields = { new AlertField { Name = "pid", Value = "42" } } };
        using var terminal = TerminalConsole();
        using var writer = new StringWriter();
        var pipe = Terminal.Create(writer);

        CoordinationCommands.WriteAlert(Context(terminal), alert);
        CoordinationCommands.WriteAlert(Context(pipe), alert);

        Assert.Matches($"^\\d\\d:\\d\\d:\\d\\d\\.609 \u001b\\[[0-9;]+m{word} *\u001b\\[0m r1 \\(Rule one\\): pid=42 \\[task t1\\] \\[chain e1 > \\]", terminal.Output);
        var time = DateTimeOffset.FromUnixTimeMilliseconds(1_796_456_488_609).UtcDateTime.ToString("HH:mm:ss.fff", System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal($"{time} {word,-8} r1 (Rule one): pid=42 [task t1] [chain e1 > ]", writer.ToString().TrimEnd('\n', '\r'));
    }

    [Theory]
    [InlineData("{\"event\":{\"process\":{\"pid\":\"42\"}}}")]
    [InlineData("[{\"start_time_unix_ms\":\"1796456488609\"}]")]
    [InlineData("{\"broker\":{\"unrouted\":\"0\"}}")]
    public void The_json_type_check_fails_a_number_written_as_a_string_anywhere(string json) =>
        Assert.ThrowsAny<Xunit.Sdk.XunitException>(() => SchemaAssert.NumbersAreNumbers(json));

    [Fact]
    public void The_json_type_check_accepts_numbers_and_the_protocols_text_maps() =>
        SchemaAssert.NumbersAreNumbers("{\"pid\":42,\"settings\":{\"scan_interval_ms\":\"100\"},\"details\":{\"restarts\":\"2\"},\"name\":\"x\",\"latency_us\":{\"p50\":1.5}}");

    [Fact]
    public void Alerts_json_matches_its_schema()
    {
        var alert = new Alert { AlertId = "a1", RuleId = "r1", Severity = "high", RaisedUnixMs = 1_796_456_488_609, Fields = { new AlertField { Name = "pid", Value = "42" } } };

        var json = CoordinationCommands.AlertJson(alert, Message("events.alert.high", alert));

        SchemaAssert.Valid("alerts", json);
        using var document = JsonDocument.Parse(json);
        Assert.Equal(1_796_456_488_609UL, document.RootElement.GetProperty("raised_unix_ms").GetUInt64());
    }

    [Fact]
    public void Collector_diagnostics_json_matches_its_schema()
    {
        var diagnostics = new Diagnostics { CollectorId = "procmond", Pid = 42, UptimeMs = 5_000_000_000, Counters = { ["events"] = ulong.MaxValue / 2 }, Settings = { ["capacity"] = "1" } };

        var json = DiagnosticsCommand.ToJson(diagnostics);

        SchemaAssert.Valid("diagnostics", json);
        using var document = JsonDocument.Parse(json);
        Assert.Equal(ulong.MaxValue / 2, document.RootElement.GetProperty("counters").GetProperty("events").GetUInt64());
    }

    [Fact]
    public async Task Config_show_json_matches_its_schema()
    {
        var directory = Directory.CreateTempSubdirectory("de-cli-out-").FullName;
        try
        {
            var rules = Directory.CreateDirectory(Path.Combine(directory, "rules")).FullName;
            var file = Path.Combine(directory, "daemoneye.yaml");
            await File.WriteAllTextAsync(file, $"coordination:\n  rules:\n    directory: {rules}\nbroker:\n  max_subscribers: 50\n");

            var (code, output, error) = await RunAsync("config", "show", "--config", file, "--json");

            Assert.True(code == 0, error);
            SchemaAssert.Valid("config-show", output);
            using var document = JsonDocument.Parse(output);
            Assert.Equal(JsonValueKind.Number, document.RootElement.GetProperty("values").GetProperty("broker").GetProperty("max_subscribers").GetProperty("value").ValueKind);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    private static async Task<(int Code, string Out, string Err)> RunAsync(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        var code = await CliApplication.InvokeAsync(args, output, error);
        return (code, output.ToString(), error.ToString());
    }

    [Theory]
    [InlineData("--last is 0; allowed: 1 to 10000", "subscribe", "events.#", "--last", "0")]
    [InlineData("--last is 10001; allowed: 1 to 10000", "alerts", "tail", "--last", "10001")]
    [InlineData("--last with --durable: a durable consumer starts where it left off", "subscribe", "events.alert.#", "--last", "5", "--durable", "siem")]
    public async Task Last_out_of_range_or_with_a_durable_consumer_is_invalid_input_before_any_connection(string expected, params string[] args)
    {
        var (code, output, error) = await RunAsync(args);

        Assert.Equal(CliApplication.Invalid, code);
        Assert.Equal(string.Empty, output);
        Assert.Contains("error: " + expected, error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Completion_scripts_use_the_suggest_directive_which_answers()
    {
        var (bashCode, bash, _) = await RunAsync("completion", "bash");
        var (zshCode, zsh, _) = await RunAsync("completion", "zsh");
        var (code, suggestions, _) = await RunAsync("[suggest:14]", "collectors lis");

        Assert.Equal((0, 0, 0), (bashCode, zshCode, code));
        Assert.Contains("complete -o default -F _daemoneye_cli_complete daemoneye-cli", bash, StringComparison.Ordinal);
        Assert.Contains("[suggest:${#rest}]", bash, StringComparison.Ordinal);
        Assert.Contains("compdef _daemoneye_cli daemoneye-cli", zsh, StringComparison.Ordinal);
        Assert.Equal("list", suggestions.Trim());
    }
}
