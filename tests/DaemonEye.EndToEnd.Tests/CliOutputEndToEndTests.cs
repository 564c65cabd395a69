using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using DaemonEye.Cli;
using DaemonEye.Cli.Output;
using DaemonEye.Client;
using DaemonEye.Client.Tests;
using DaemonEye.Protocol.Ipc.V1;
using Spectre.Console;
using Spectre.Console.Testing;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>One agent supervising the real procmond (scanning every 100 ms, heartbeating every 0.2 s), for the CLI output tests.</summary>
public sealed class ProcmondAgentFixture : IAsyncLifetime
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    internal AgentProcess Agent { get; private set; } = null!;

    /// <summary>A configuration file naming the agent's socket, for the CLI run in-process (--config).</summary>
    internal string ConfigPath { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Agent = await AgentProcess.StartAsync(new Dictionary<string, string>
        {
            ["DAEMONEYE_COLLECTORS__0__ID"] = "procmond",
            ["DAEMONEYE_COLLECTORS__0__EXECUTABLE"] = Path.Combine(Path.GetDirectoryName(Paths.AgentDll)!, "collectors", "procmond", "procmond.dll"),
            ["DAEMONEYE_COLLECTORS__0__ARGUMENTS__0"] = "--scan-interval-ms",
            ["DAEMONEYE_COLLECTORS__0__ARGUMENTS__1"] = "100",
            ["DAEMONEYE_PROCESS_MANAGER__HEARTBEAT_INTERVAL_SECONDS"] = "0.2",
            // The shipped durable topics, and one the tests may publish on (subscribe --last).
            ["DAEMONEYE_DURABILITY__TOPICS__0"] = "events.alert.#",
            ["DAEMONEYE_DURABILITY__TOPICS__1"] = "control.collector.lifecycle",
            ["DAEMONEYE_DURABILITY__TOPICS__2"] = "events.demo.retained.#",
        });
        ConfigPath = Path.Combine(Agent.Directory, "cli.yaml");
        await File.WriteAllTextAsync(ConfigPath, $"broker:\n  socket_path: {Agent.SocketPath}\n");

        // Running and heartbeating: checked at each control message (heartbeats come every 0.2 s).
        await using var watcher = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = Agent.SocketPath, ClientId = "cli-output-watcher" });
        var control = await watcher.SubscribeAsync("control.#");
        using var timeout = new CancellationTokenSource(Patience);
        var status = await IpcProbe.CollectorAsync(Agent.IpcSocketPath, "procmond");
        while (!(status.State == CollectorState.Running && status.LastHeartbeatUnixNanos != 0) && await control.Reader.WaitToReadAsync(timeout.Token))
        {
            while (control.Reader.TryRead(out _))
            {
            }

            status = await IpcProbe.CollectorAsync(Agent.IpcSocketPath, "procmond");
        }
    }

    public async Task DisposeAsync()
    {
        if (Agent is not null)
        {
            await Agent.DisposeAsync();
        }
    }
}

/// <summary>
/// daemoneye-cli's output against a real agent and procmond: colour on a terminal (Spectre's
/// TestConsole, and a real pseudo-terminal through script(1)) and none on a pipe; every -o json
/// output checked against its schema (docs/schemas); ps --tree placing this test's child under
/// this process; publish from stdin; logs; --watch on a pipe and in place on a terminal; -o wide;
/// subscribe's multi-line and --compact forms; top's rates against messages published; streams.
/// </summary>
public sealed partial class CliOutputEndToEndTests(ProcmondAgentFixture fixture) : IClassFixture<ProcmondAgentFixture>
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [GeneratedRegex("\u001b\\[[0-9;]*m")]
    private static partial Regex Sgr();

    private AgentProcess Agent => fixture.Agent;

    /// <summary>The CLI in this process, stdout as <paramref name="console"/>, stdin as <paramref name="input"/>.</summary>
    private async Task<(int Code, string Err)> RunAsync(IAnsiConsole console, Stream? input, params string[] args)
    {
        using var error = new StringWriter();
        var code = await CliApplication.InvokeAsync([.. args, "--config", fixture.ConfigPath], console, error, input ?? Stream.Null);
        return (code, error.ToString());
    }

    /// <summary>The CLI in this process with stdout a pipe.</summary>
    private async Task<(int Code, string Out, string Err)> PipeAsync(params string[] args)
    {
        using var output = new StringWriter();
        var (code, error) = await RunAsync(Terminal.Create(output), null, args);
        return (code, output.ToString(), error);
    }

    [Fact]
    public async Task A_terminal_gets_colour_and_relative_times_and_a_pipe_gets_neither()
    {
        using var terminal = new TestConsole().Interactive().EmitAnsiSequences().Width(200);
        terminal.Profile.Capabilities.Unicode = true;
        var (code, error) = await RunAsync(terminal, null, "collectors", "list");
        Assert.True(code == 0, error);
        Assert.Matches("\u001b\\[[0-9;]+m✔ Running", terminal.Output);
        Assert.Matches("(\\d+ s ago|now)", terminal.Output);

        using var health = new TestConsole().Interactive().EmitAnsiSequences().Width(200);
        (code, error) = await RunAsync(health, null, "health");
        Assert.True(code is 0 or 1, error);
        Assert.Matches(Sgr(), health.Output);

        var (pipeCode, pipe, pipeError) = await PipeAsync("collectors", "list");
        Assert.True(pipeCode == 0, pipeError);
        Assert.DoesNotContain('\u001b', pipe);
        Assert.Matches("procmond +Running +Healthy +\\d+ +0 +\\d{4}-\\d\\d-\\d\\dT[0-9:.]+Z", pipe);

        // The real program with its stdout a pipe.
        var (childCode, lines, childError) = await CliProcess.RunAsync(Agent.SocketPath, Patience, "status");
        Assert.True(childCode == 0, childError);
        Assert.DoesNotContain(lines, l => l.Contains('\u001b', StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_real_pseudo_terminal_gets_colour_unless_NO_COLOR_is_set()
    {
        async Task<string> InPtyAsync(bool noColor)
        {
            // script(1) gives the CLI a pseudo-terminal as stdout and copies what it writes to ours.
            var start = new ProcessStartInfo("script") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
            foreach (var arg in new[] { "-qec", $"dotnet '{Paths.CliDll}' collectors list", "/dev/null" })
            {
                start.ArgumentList.Add(arg);
            }

            start.Environment["DAEMONEYE_BROKER__SOCKET_PATH"] = Agent.SocketPath;
            start.Environment["TERM"] = "xterm-256color";
            start.Environment.Remove("NO_COLOR");
            if (noColor)
            {
                start.Environment["NO_COLOR"] = "1";
            }

            using var process = Process.Start(start)!;
            process.StandardInput.Close();
            var stdout = process.StandardOutput.ReadToEndAsync();
            using var timeout = new CancellationTokenSource(Patience);
            await process.WaitForExitAsync(timeout.Token);
            Assert.True(process.ExitCode == 0, $"exit {process.ExitCode}: {await process.StandardError.ReadToEndAsync()}\n{await stdout}");
            return await stdout;
        }

        var color = await InPtyAsync(noColor: false);
        var plain = await InPtyAsync(noColor: true);

        Assert.Matches("\u001b\\[[0-9;]+m✔ Running", color);
        Assert.Contains("Running", plain, StringComparison.Ordinal);
        Assert.DoesNotMatch(Sgr(), plain);
    }

    [Fact]
    public async Task Every_json_output_matches_its_schema()
    {
        (string Schema, string[] Args, bool Lines)[] commands =
        [
            ("status", ["status", "-o", "json"], false),
            ("collectors-list", ["collectors", "list", "--json"], false),
            ("collectors-action", ["collectors", "health", "procmond", "--json"], false),
            ("health", ["health", "-o", "json"], false),
            ("metrics", ["metrics", "-o", "json"], false),
            ("topics", ["topics", "-o", "json"], false),
            ("rules-list", ["rules", "list", "-o", "json"], false),
            ("ps", ["ps", "-o", "json"], false),
            ("ps-tree", ["ps", "--tree", "-o", "json"], false),
            ("task-run", ["task", "run", "process.snapshot", "--json"], false),
            ("top", ["top", "-o", "json", "--interval", "0.2", "--samples", "2"], true),
            ("logs", ["logs", "procmond", "-o", "json"], false),
            ("diagnostics", ["collectors", "diagnostics", "procmond", "--json"], false),
        ];
        foreach (var (schema, args, lines) in commands)
        {
            var (code, output, error) = await PipeAsync(args);
            Assert.True(code is 0 or 1 && output.Length > 0, $"{string.Join(' ', args)}: exit {code}: {error}");
            foreach (var document in lines ? output.Split('\n', StringSplitOptions.RemoveEmptyEntries) : [output])
            {
                SchemaAssert.Valid(schema, document);
            }

            if (lines)
            {
                Assert.Equal(2, output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
            }
        }

        // The benchmarks, small, as the real program (their socket completion settings are process-wide).
        (string Schema, string[] Args)[] benches =
        [
            ("bench-pubsub", ["bench", "pubsub", "--messages", "2000", "--subscribers", "2", "--json"]),
            ("bench-pubsub", ["bench", "pubsub", "--messages", "2000", "--rate", "20000", "--warmup", "100", "--receive", "channel", "--completions", "thread-pool", "--json"]),
            ("bench-rpc", ["bench", "rpc", "--collector", "procmond", "--requests", "200", "--warmup", "20", "--concurrency", "4", "--json"]),
            ("bench-tasks", ["bench", "tasks", "--type", "process.snapshot", "--count", "3", "--warmup", "1", "--concurrency", "1", "--json"]),
        ];
        foreach (var (schema, args) in benches)
        {
            var (code, stdout, stderr) = await CliProcess.RunAsync(Agent.SocketPath, Patience, [.. args, "--config", fixture.ConfigPath]);
            Assert.True(code == 0 && stdout.Count > 0, $"{string.Join(' ', args)}: exit {code}: {stderr}");
            SchemaAssert.Valid(schema, string.Join('\n', stdout));
        }

        // The same numbers have the same JSON type everywhere: the process ids and times of ps and of task run.
        var (_, ps, _) = await PipeAsync("ps", "-o", "json");
        using var psJson = JsonDocument.Parse(ps);
        Assert.All(psJson.RootElement.EnumerateArray(), p => Assert.Equal(JsonValueKind.Number, p.GetProperty("start_time_unix_ms").ValueKind));
        var (_, task, _) = await PipeAsync("task", "run", "process.snapshot", "--json");
        using var taskJson = JsonDocument.Parse(task);
        var snapshot = Assert.Single(taskJson.RootElement.GetProperty("results").EnumerateArray()).GetProperty("payload_decoded");
        Assert.Equal(JsonValueKind.Number, snapshot.GetProperty("taken_unix_ms").ValueKind);
        Assert.All(snapshot.GetProperty("processes").EnumerateArray(), p => Assert.Equal(JsonValueKind.Number, p.GetProperty("start_time_unix_ms").ValueKind));
        Assert.Equal(JsonValueKind.Number, taskJson.RootElement.GetProperty("duration_us").ValueKind);
    }

    [Fact]
    public async Task Publish_dash_reads_the_payload_from_stdin_and_subscribe_json_matches_its_schema()
    {
        var payload = "line one\nline two: ünïcode\n";
        using var subscriber = new CliProcess(Agent.SocketPath, "subscribed to", "subscribe", "events.demo.stdin", "--json", "--count", "1");
        await subscriber.Marker.WaitAsync(Patience);

        using var stdin = new MemoryStream(Encoding.UTF8.GetBytes(payload));
        using var output = new StringWriter();
        var (code, error) = await RunAsync(Terminal.Create(output), stdin, "publish", "events.demo.stdin", "-");
        Assert.True(code == 0, error);
        Assert.Equal("published 1 message(s) to events.demo.stdin", output.ToString().Trim());

        Assert.Equal(0, await subscriber.WaitAsync(Patience));
        var line = Assert.Single(subscriber.Stdout);
        SchemaAssert.Valid("subscribe", line);
        using var json = JsonDocument.Parse(line);
        Assert.Equal(payload, json.RootElement.GetProperty("payload").GetString());
    }

    [Fact]
    public async Task Ps_tree_shows_this_tests_child_process_under_this_process()
    {
        // A child that lives until its stdin closes: procmond sees it with this process as parent.
        using var child = Process.Start(new ProcessStartInfo("cat") { RedirectStandardInput = true, UseShellExecute = false })!;
        try
        {
            var parent = Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
            var pid = child.Id.ToString(CultureInfo.InvariantCulture);

            // Polled with a deadline: each --fresh answer is a new scan.
            using var deadline = new CancellationTokenSource(Patience);
            JsonElement? node = null;
            while (node is null)
            {
                deadline.Token.ThrowIfCancellationRequested();
                var (code, json, error) = await PipeAsync("ps", "--tree", "--fresh", "-o", "json");
                Assert.True(code == 0, error);
                SchemaAssert.Valid("ps-tree", json);
                node = Find(JsonDocument.Parse(json).RootElement, Environment.ProcessId);
            }

            Assert.Contains(node.Value.GetProperty("children").EnumerateArray(), c => c.GetProperty("pid").GetInt32() == child.Id && c.GetProperty("name").GetString() == "cat");

            // On a pipe: the child's line right under its parent's subtree, two spaces deeper.
            var (textCode, text, textError) = await PipeAsync("ps", "--tree");
            Assert.True(textCode == 0, textError);
            var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            var parentLine = Array.FindIndex(lines, l => l.TrimStart().StartsWith(parent + " ", StringComparison.Ordinal));
            Assert.True(parentLine >= 0, text);
            var depth = Indent(lines[parentLine]);
            var subtree = lines.Skip(parentLine + 1).TakeWhile(l => Indent(l) > depth).ToList();
            Assert.Contains(subtree, l => Indent(l) == depth + 2 && l.TrimStart().StartsWith(pid + " cat ", StringComparison.Ordinal));

            // On a terminal: a tree with guides.
            using var terminal = new TestConsole().Interactive().Width(300);
            var (treeCode, treeError) = await RunAsync(terminal, null, "ps", "--tree");
            Assert.True(treeCode == 0, treeError);
            Assert.Contains(terminal.Lines, l => Regex.IsMatch(l, $"(└──|├──) {pid} cat "));
        }
        finally
        {
            child.StandardInput.Close();
            await child.WaitForExitAsync();
        }

        static int Indent(string line) => line.Length - line.TrimStart().Length;

        static JsonElement? Find(JsonElement nodes, int pid)
        {
            foreach (var n in nodes.EnumerateArray())
            {
                if (n.GetProperty("pid").GetInt32() == pid)
                {
                    return n;
                }

                if (Find(n.GetProperty("children"), pid) is { } found)
                {
                    return found;
                }
            }

            return null;
        }
    }

    [Fact]
    public async Task Logs_prints_the_collectors_recent_output_and_refuses_an_unknown_id()
    {
        // procmond writes its start-up lines before it registers, so they are kept by now.
        var (code, output, error) = await PipeAsync("logs", "procmond", "-n", "3");
        Assert.True(code == 0, error);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.InRange(lines.Length, 1, 3);
        Assert.All(lines, l => Assert.Matches("^\\d{4}-\\d\\d-\\d\\dT[0-9:.]+Z (stdout|stderr) ", l));

        (code, _, error) = await PipeAsync("logs", "nobody");
        Assert.Equal(1, code);
        Assert.Contains("NotFound: no collector 'nobody'; known: procmond", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Subscribe_on_a_terminal_prints_a_decoded_event_over_several_lines_and_one_line_with_compact()
    {
        var file = new DaemonEye.Protocol.Filesystem.V1.FileEvent { Kind = DaemonEye.Protocol.Filesystem.V1.FileEventKind.Modified, Path = "/etc/passwd", Size = 3_000_000_000, CollectorId = "fsmond" };

        async Task<List<string>> ShowAsync(params string[] options)
        {
            var topic = "events.demo.pretty-" + Guid.NewGuid().ToString("N")[..8];
            using var terminal = new TestConsole().Interactive().Width(200);
            using var error = new MarkerWriter("subscribed to");
            var run = CliApplication.InvokeAsync(["subscribe", topic, "--count", "1", .. options, "--config", fixture.ConfigPath], terminal, error, Stream.Null);
            await error.Marker.WaitAsync(Patience);
            await using (var client = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = Agent.SocketPath, ClientId = "pretty-publisher" }))
            {
                await client.PublishAsync(topic, Google.Protobuf.MessageExtensions.ToByteArray(file), new PublishOptions { ContentType = "application/x-protobuf; messageType=" + DaemonEye.Protocol.Filesystem.V1.FileEvent.Descriptor.FullName });
                await client.FlushAsync();
            }

            var code = await run.WaitAsync(Patience);
            Assert.True(code == 0, error.ToString());
            return [.. terminal.Lines.Where(l => l.Trim().Length > 0).Select(l => l.TrimEnd())];
        }

        var pretty = await ShowAsync();
        var compact = await ShowAsync("--compact");

        Assert.Matches("^events\\.demo\\.pretty-[0-9a-f]{8} #1 · ", pretty[0]);
        Assert.Equal("  FileEvent", pretty[1]);
        Assert.Contains("  path: /etc/passwd", pretty);
        Assert.Contains("  size: 3000000000", pretty);
        var line = Assert.Single(compact);
        Assert.Matches("^events\\.demo\\.pretty-[0-9a-f]{8} seq=1 .*FileEvent .*\"path\":\"/etc/passwd\"", line);
        Assert.Contains("\"size\":3000000000", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Top_counts_the_messages_published_between_its_samples()
    {
        using var output = new MarkerWriter(null);
        using var cancel = new CancellationTokenSource();
        using var error = new StringWriter();
        var run = CliApplication.InvokeAsync(["top", "-o", "json", "--interval", "0.3", "--config", fixture.ConfigPath], Terminal.Create(output), error, Stream.Null, cancel.Token);

        // After the first sample: 200 messages, all routed (the flush is the agent's barrier); then two
        // more samples, so that the one whose reading began after the flush is among them.
        await output.LinesAsync(1).WaitAsync(Patience);
        await using (var client = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = Agent.SocketPath, ClientId = "top-publisher" }))
        {
            for (var i = 0; i < 200; i++)
            {
                await client.PublishAsync("events.top-test.x", "x"u8.ToArray());
            }

            await client.FlushAsync();
        }

        await output.LinesAsync(output.Lines + 2).WaitAsync(Patience);
        await cancel.CancelAsync();
        try
        {
            await run;
        }
        catch (OperationCanceledException)
        {
        }

        var samples = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var events = 0.0;
        foreach (var sample in samples)
        {
            SchemaAssert.Valid("top", sample);
            using var json = JsonDocument.Parse(sample);
            var byRoot = json.RootElement.GetProperty("bus").GetProperty("published_per_second_by_topic_root");
            events += byRoot.TryGetProperty("events", out var rate) ? rate.GetDouble() * json.RootElement.GetProperty("interval_seconds").GetDouble() : 0;
        }

        // Rates times their intervals add up to the messages (procmond's events come on top), within rounding.
        Assert.True(events >= 198, $"the samples account for {events:0.0} events.* messages of the 200 published:\n{output}\n{error}");
    }

    [Fact]
    public async Task Bench_pubsub_shows_its_progress_on_stderr_while_it_runs()
    {
        // 3,000 messages paced at 1,000/s: three seconds, so at least one progress line (every 2 s) before the result.
        using var bench = new CliProcess(Agent.SocketPath, "bench: ", "bench", "pubsub", "--messages", "3000", "--rate", "1000", "--warmup", "0", "--json");
        await bench.Marker.WaitAsync(Patience);
        var code = await bench.WaitAsync(Patience);

        Assert.True(code == 0, $"exit {code}: {bench.Stderr}");
        Assert.Matches(new Regex(@"^bench: [\d,]+ of 3,000 messages delivered or dropped, \d+\.\d s$", RegexOptions.Multiline), bench.Stderr);
        SchemaAssert.Valid("bench-pubsub", string.Join('\n', bench.Stdout));
    }

    [Fact]
    public async Task Output_wide_adds_columns_and_absolute_times_and_json_is_the_same_as_output_json()
    {
        string[] Header(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries)[0].Split(' ', StringSplitOptions.RemoveEmptyEntries);

        var (code, collectors, error) = await PipeAsync("collectors", "list", "-o", "wide");
        Assert.True(code == 0, error);
        Assert.Equal(["ID", "STATE", "HEALTH", "PID", "RESTARTS", "LAST", "HEARTBEAT", "ENABLED", "EXECUTABLE", "REASON"], Header(collectors));
        Assert.Contains(collectors.Split('\n'), l => l.StartsWith("procmond ", StringComparison.Ordinal) && l.Contains("procmond.dll", StringComparison.Ordinal));

        // On a terminal the table shows "3 s ago"; wide shows the absolute time there too.
        using var terminal = new TestConsole().Interactive().Width(300);
        (code, error) = await RunAsync(terminal, null, "collectors", "list", "-o", "wide");
        Assert.True(code == 0, error);
        Assert.Matches("\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z", terminal.Output);
        Assert.DoesNotContain(" ago", terminal.Output, StringComparison.Ordinal);

        (code, var ps, error) = await PipeAsync("ps", "-o", "wide");
        Assert.True(code == 0, error);
        Assert.Equal(["PID", "PPID", "USER", "NAME", "CPU%", "RSS", "THREADS", "STARTED", "EXE-SHA256", "COMMAND"], Header(ps));

        (code, var rules, error) = await PipeAsync("rules", "list", "-o", "wide");
        Assert.True(code is 0 or 1, error);
        Assert.Equal("DESCRIPTION", Header(string.Join('\n', rules.Split('\n').Skip(1)))[^1]);

        // --json is -o json.
        var (jsonCode, json, jsonError) = await PipeAsync("collectors", "list", "--json");
        var (outputCode, output, outputError) = await PipeAsync("collectors", "list", "-o", "json");
        Assert.True(jsonCode == 0 && outputCode == 0, jsonError + outputError);
        using var a = JsonDocument.Parse(json);
        using var b = JsonDocument.Parse(output);
        Assert.Equal(
            a.RootElement.EnumerateArray().Select(c => (c.GetProperty("id").GetString(), c.GetProperty("pid").GetRawText())),
            b.RootElement.EnumerateArray().Select(c => (c.GetProperty("id").GetString(), c.GetProperty("pid").GetRawText())));
    }

    [Fact]
    public async Task Watch_on_a_terminal_redraws_the_view_in_place_under_a_header()
    {
        using var terminal = new TestConsole().Interactive().EmitAnsiSequences().Width(200);
        terminal.Profile.Capabilities.Unicode = true;

        var (code, error) = await RunAsync(terminal, null, "collectors", "list", "--watch", "--interval", "0.2", "--samples", "3");

        Assert.True(code == 0, error);
        var text = terminal.Output;
        var plain = Sgr().Replace(text, string.Empty);
        // Spectre's live display: the header and the table drawn for each sample (at least), the
        // cursor moved back up before each redraw (ESC [ n A) instead of the view printed below the last.
        var headers = Regex.Count(plain, "collectors list · every 0\\.2 s · \\d\\d:\\d\\d:\\d\\d · Ctrl-C to stop");
        Assert.True(headers >= 3, $"{headers} header(s) for 3 samples:\n{plain}");
        Assert.True(Regex.Count(text, "\u001b\\[\\d+A") >= 2, text);
        Assert.Matches("\u001b\\[[0-9;]+m✔ Running", text);
    }

    [Fact]
    public async Task Watch_on_a_pipe_prints_one_sample_after_another()
    {
        var (code, output, error) = await PipeAsync("collectors", "list", "--watch", "--interval", "0.2", "--samples", "2");

        Assert.True(code == 0, error);
        Assert.Equal(2, output.Split('\n').Count(l => l.StartsWith("ID ", StringComparison.Ordinal)));
        Assert.Equal(2, output.Split('\n').Count(l => l.StartsWith("procmond ", StringComparison.Ordinal)));
    }
}
