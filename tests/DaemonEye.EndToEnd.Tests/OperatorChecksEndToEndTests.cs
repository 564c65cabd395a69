using System.Diagnostics;
using DaemonEye.Client;
using DaemonEye.Protocol.Ipc.V1;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// Issue 21, "checks that tell the truth" and "health and logs that match reality", against the
/// real agent and the real CLI: <c>config validate</c> refuses what the agent refuses, with the same
/// words, naming where each value came from (file and line, or environment variable); <c>config
/// show</c> never crashes; no stack traces; a crash-looping collector makes <c>health</c> degraded
/// and is logged at warning, a Failed one at error; successful RPCs are not logged one by one at
/// information.
/// </summary>
public sealed partial class OperatorChecksEndToEndTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(90);

    /// <summary>A stack trace line as .NET prints one.</summary>
    private static bool IsStackFrame(string line) => line.TrimStart().StartsWith("at ", StringComparison.Ordinal) && line.Contains(" in ", StringComparison.Ordinal) || line.Contains("Unhandled exception", StringComparison.Ordinal) || line.TrimStart().StartsWith("at DaemonEye.", StringComparison.Ordinal) || line.TrimStart().StartsWith("at System.", StringComparison.Ordinal) || line.TrimStart().StartsWith("at Microsoft.", StringComparison.Ordinal);

    private static void NoStackTrace(string output) =>
        Assert.False(output.Split('\n').Any(IsStackFrame), $"a stack trace was printed:\n{output}");

    [Fact]
    public async Task A_socket_in_tmp_is_refused_by_config_validate_and_the_agent_alike_with_advice_to_use_a_private_directory()
    {
        using var directory = new TempDirectory();
        var socket = $"/tmp/de-e2e-{Guid.NewGuid():N}.sock";
        var env = new Dictionary<string, string> { ["DAEMONEYE_BROKER__SOCKET_PATH"] = socket };

        var (agentCode, agentOutput) = await AgentProcess.RunToExitAsync(env, [], Patience);
        var (cliCode, _, cliError) = await Cli.RunAsync(directory.Path, env, "config", "validate");

        Assert.Equal(2, agentCode);
        Assert.Equal(2, cliCode);
        var agentLine = Assert.Single(agentOutput.Split('\n'), l => l.Contains("broker.socket_path '" + socket + "'", StringComparison.Ordinal));
        var cliLine = Assert.Single(cliError.Split('\n'), l => l.Contains("broker.socket_path '" + socket + "'", StringComparison.Ordinal));
        Assert.Equal(agentLine.Trim()["- ".Length..], cliLine["error: ".Length..]);
        Assert.Contains("socket directory '/tmp'", cliLine, StringComparison.Ordinal);
        Assert.Contains("/tmp/daemoneye", cliLine, StringComparison.Ordinal);
        Assert.DoesNotContain("chmod", cliLine, StringComparison.Ordinal);
        Assert.EndsWith("(environment DAEMONEYE_BROKER__SOCKET_PATH)", cliLine, StringComparison.Ordinal);
        if (Hosting.Posix.IsRoot)
        {
            Assert.Contains("do not change its mode", cliLine, StringComparison.Ordinal);
        }

        NoStackTrace(agentOutput);
        Assert.False(File.Exists(socket));
    }

    [Fact]
    public async Task A_missing_or_non_executable_collector_executable_is_refused_by_config_validate_and_the_agent_naming_its_source()
    {
        using var directory = new TempDirectory();
        var missing = Path.Combine(directory.Path, "no-such-collector");
        var notExecutable = Path.Combine(directory.Path, "not-executable");
        await File.WriteAllTextAsync(notExecutable, "#!/bin/sh\nexit 0\n");
        File.SetUnixFileMode(notExecutable, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var config = Path.Combine(directory.Path, "collectors.yaml");
        await File.WriteAllTextAsync(config, $"""
            collectors:
              - id: second
                executable: {notExecutable}
            """);
        var env = new Dictionary<string, string>
        {
            ["DAEMONEYE_BROKER__SOCKET_PATH"] = Path.Combine(directory.Path, "run", "bus.sock"),
            ["DAEMONEYE_COLLECTORS__1__ID"] = "ghost",
            ["DAEMONEYE_COLLECTORS__1__EXECUTABLE"] = missing,
        };

        var (agentCode, agentOutput) = await AgentProcess.RunToExitAsync(env, ["--config", config], Patience);
        var (cliCode, _, cliError) = await Cli.RunAsync(directory.Path, env, "config", "validate", config);

        Assert.Equal(2, agentCode);
        Assert.Equal(2, cliCode);
        string[] expected =
        [
            $"collectors[0].executable '{notExecutable}' is not executable by this user",
            $"collectors[1].executable '{missing}' does not exist; collector 'ghost': the agent cannot start it (environment DAEMONEYE_COLLECTORS__1__EXECUTABLE)",
        ];
        foreach (var message in expected)
        {
            Assert.Contains("  - " + message, agentOutput, StringComparison.Ordinal);
            Assert.Contains("error: " + message, cliError, StringComparison.Ordinal);
        }

        Assert.Contains($"chmod +x {notExecutable}; collector 'second': the agent cannot start it (file {config}:3)", cliError, StringComparison.Ordinal);
        NoStackTrace(agentOutput);
    }

    [Fact]
    public async Task A_wrong_typed_value_from_the_environment_or_the_file_is_named_with_its_source_and_config_show_does_not_crash()
    {
        using var directory = new TempDirectory();
        var config = Path.Combine(directory.Path, "typed.yaml");
        await File.WriteAllTextAsync(config, """
            # a comment
            broker:
              max_subscribers: many
            """);
        var env = new Dictionary<string, string>
        {
            ["DAEMONEYE_BROKER__SOCKET_PATH"] = Path.Combine(directory.Path, "run", "bus.sock"),
            ["DAEMONEYE_RPC__DEFAULT_TIMEOUT_SECONDS"] = "abc",
        };

        var (showCode, showOut, showError) = await Cli.RunAsync(directory.Path, env, "config", "show", "--config", config);
        var (jsonCode, jsonOut, _) = await Cli.RunAsync(directory.Path, env, "config", "show", "--json", "--config", config);
        var (agentCode, agentOutput) = await AgentProcess.RunToExitAsync(env, ["--config", config], Patience);

        Assert.Equal(2, showCode);
        Assert.Equal(2, jsonCode);
        Assert.Equal(2, agentCode);
        NoStackTrace(showError);
        NoStackTrace(agentOutput);
        var text = string.Join('\n', showOut);
        Assert.Matches(@"default_timeout_seconds: ""abc"" +# environment DAEMONEYE_RPC__DEFAULT_TIMEOUT_SECONDS; invalid", text);
        Assert.Matches($@"max_subscribers: ""many"" +# file {System.Text.RegularExpressions.Regex.Escape(config)}:3; invalid", text);
        Assert.Matches(@"max_connections: \d+ +# default", text);
        using (var json = System.Text.Json.JsonDocument.Parse(string.Join('\n', jsonOut)))
        {
            Assert.Equal(2, json.RootElement.GetProperty("errors").GetArrayLength());
        }

        string[] expected =
        [
            "rpc.default_timeout_seconds is 'abc'; allowed: a whole number (environment DAEMONEYE_RPC__DEFAULT_TIMEOUT_SECONDS)",
            $"broker.max_subscribers is 'many'; allowed: a whole number (file {config}:3)",
        ];
        foreach (var message in expected)
        {
            Assert.Contains("# error: " + message, text, StringComparison.Ordinal);
            Assert.Contains("  - " + message, agentOutput, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task A_yaml_syntax_error_is_reported_with_file_line_and_column_without_a_stack_trace()
    {
        using var directory = new TempDirectory();
        var config = Path.Combine(directory.Path, "broken.yaml");
        await File.WriteAllTextAsync(config, "broker:\n  max_subscribers: 10\n  socket_path: [unclosed\nrpc:\n  default_timeout_seconds: 5\n");
        var env = new Dictionary<string, string> { ["DAEMONEYE_BROKER__SOCKET_PATH"] = Path.Combine(directory.Path, "run", "bus.sock") };

        var (agentCode, agentOutput) = await AgentProcess.RunToExitAsync(env, ["--config", config], Patience);
        var (cliCode, _, cliError) = await Cli.RunAsync(directory.Path, env, "config", "validate", config);
        var (showCode, _, showError) = await Cli.RunAsync(directory.Path, env, "config", "show", "--config", config);

        Assert.Equal(2, agentCode);
        Assert.Equal(2, cliCode);
        Assert.Equal(2, showCode);
        Assert.Matches($@"daemoneye-agent: {System.Text.RegularExpressions.Regex.Escape(config)}:[345]:\d+: not valid YAML: ", agentOutput);
        Assert.Matches($@"^error: {System.Text.RegularExpressions.Regex.Escape(config)}:[345]:\d+: not valid YAML: ", cliError);
        Assert.Matches($@"^error: {System.Text.RegularExpressions.Regex.Escape(config)}:[345]:\d+: not valid YAML: ", showError);
        NoStackTrace(agentOutput);
        NoStackTrace(cliError);
    }

    [Fact]
    public async Task Config_validate_reports_a_rule_file_that_does_not_load_with_its_file_and_line_as_a_warning()
    {
        using var directory = new TempDirectory();
        var rules = Directory.CreateDirectory(Path.Combine(directory.Path, "rules")).FullName;
        await File.WriteAllTextAsync(Path.Combine(rules, "good.yaml"), "id: good\nname: Good\nseverity: low\ndescription: fine\nsql: SELECT pid FROM processes\n");
        await File.WriteAllTextAsync(Path.Combine(rules, "bad.yaml"), "id: bad\nname: Bad\nseverity: extreme\ndescription: wrong severity\nsql: SELECT pid FROM processes\n");
        var config = Path.Combine(directory.Path, "rules.yaml");
        await File.WriteAllTextAsync(config, $"coordination:\n  rules:\n    directory: {rules}\n");
        var env = new Dictionary<string, string> { ["DAEMONEYE_BROKER__SOCKET_PATH"] = Path.Combine(directory.Path, "run", "bus.sock") };

        var (code, stdout, stderr) = await Cli.RunAsync(directory.Path, env, "config", "validate", config);

        Assert.True(code == 0, stderr);
        var problem = $"{Path.Combine(rules, "bad.yaml")}:3: rule 'bad': severity 'extreme' is invalid; allowed: low, medium, high, critical";
        Assert.Contains($"warning: detection rule {problem}", stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("good.yaml", stderr, StringComparison.Ordinal);
        Assert.Contains(stdout, l => l.EndsWith(": valid, 1 warning(s)", StringComparison.Ordinal));

        // The agent starts with the same file, runs the good rule, and warns about the bad one in the same words.
        await using var agent = await AgentProcess.StartAsync(args: ["--config", config]);
        var line = await agent.WaitForLineAsync(l => l.Contains("Detection rule not loaded: ", StringComparison.Ordinal), includeEarlier: true).WaitAsync(Patience);
        Assert.Contains("WRN]", line, StringComparison.Ordinal);
        Assert.EndsWith("Detection rule not loaded: " + problem, line.TrimEnd(), StringComparison.Ordinal);
        var listed = (await IpcProbe.SendAsync(agent.IpcSocketPath, new IpcRequest { RulesList = new RulesListRequest() })).RulesList;
        Assert.Equal(["good"], listed.Rules.Select(r => r.Id));
    }

    [Fact]
    public async Task Another_agent_on_the_socket_stops_the_second_with_a_clear_message_and_no_stack_trace()
    {
        await using var first = await AgentProcess.StartAsync();
        var env = new Dictionary<string, string> { ["DAEMONEYE_BROKER__SOCKET_PATH"] = first.SocketPath };

        var (code, output) = await AgentProcess.RunToExitAsync(env, [], Patience);

        Assert.Equal(1, code);
        Assert.Contains("failed to start: another process (probably a running daemoneye-agent) is already serving the bus socket", output, StringComparison.Ordinal);
        NoStackTrace(output);
    }

    [Fact]
    public async Task A_crash_looping_collector_makes_health_degraded_exit_1_and_is_logged_at_warning()
    {
        var env = new Dictionary<string, string>
        {
            ["DAEMONEYE_COLLECTORS__0__ID"] = "tc-loop",
            ["DAEMONEYE_COLLECTORS__0__EXECUTABLE"] = Paths.TestCollectorDll,
            ["DAEMONEYE_COLLECTORS__0__ARGUMENTS__0"] = "--crash-at-start",
            // One restart allowed, after a backoff long enough that the test sees the collector waiting for it.
            ["DAEMONEYE_PROCESS_MANAGER__MAX_RESTART_ATTEMPTS"] = "1",
            ["DAEMONEYE_PROCESS_MANAGER__RESTART_BACKOFF_SECONDS"] = "600",
        };
        await using var agent = await AgentProcess.StartAsync(env);
        var warning = agent.WaitForLineAsync(l => l.Contains("WRN]", StringComparison.Ordinal) && l.Contains("Collector tc-loop exited with code 3; restart 1 of 1 in 600 s", StringComparison.Ordinal), includeEarlier: true);
        var looping = await WaitForAsync(agent, "tc-loop", s => s.State == CollectorState.Stopped && s.Restarts == 1);

        var (code, lines, stderr) = await CliProcess.RunAsync(agent.SocketPath, Patience, "health");

        Assert.Equal(CollectorHealth.Unhealthy, looping.Health);
        Assert.True(code == 1, $"health exited {code}\n{string.Join('\n', lines)}\n{stderr}");
        Assert.Matches(@"^heartbeats\s+degraded\s+1 collector\(s\) exited unexpectedly and are being restarted .*tc-loop Stopped, 1 restart\(s\)", Assert.Single(lines, l => l.StartsWith("heartbeats ", StringComparison.Ordinal)));
        Assert.Equal("overall: degraded", lines[^1]);
        await warning.WaitAsync(Patience);
    }

    [Fact]
    public async Task A_collector_whose_executable_disappears_crash_loops_with_health_not_healthy_then_Failed_exit_2()
    {
        using var directory = new TempDirectory();
        var script = Path.Combine(directory.Path, "vanishing-collector");
        await File.WriteAllTextAsync(script, $"#!/bin/sh\nexec dotnet '{Paths.TestCollectorDll}' \"$@\"\n");
        File.SetUnixFileMode(script, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var env = new Dictionary<string, string>
        {
            ["DAEMONEYE_COLLECTORS__0__ID"] = "tc-vanish",
            ["DAEMONEYE_COLLECTORS__0__EXECUTABLE"] = script,
            ["DAEMONEYE_PROCESS_MANAGER__MAX_RESTART_ATTEMPTS"] = "2",
            ["DAEMONEYE_PROCESS_MANAGER__RESTART_BACKOFF_SECONDS"] = "0.2",
        };
        await using var agent = await AgentProcess.StartAsync(env);
        var running = await WaitForAsync(agent, "tc-vanish", s => s.State == CollectorState.Running);

        // The executable goes away (an upgrade gone wrong), then the collector dies: every restart fails.
        File.Delete(script);
        using (var victim = Process.GetProcessById((int)running.Pid))
        {
            victim.Kill();
        }

        var (loopCode, loopLines, _) = await CliProcess.RunAsync(agent.SocketPath, Patience, "health");
        var failed = await WaitForAsync(agent, "tc-vanish", s => s.State == CollectorState.Failed);
        var (code, lines, stderr) = await CliProcess.RunAsync(agent.SocketPath, Patience, "health");

        // While it loops, health is degraded (restarting) or already unhealthy (Failed): never healthy.
        Assert.True(loopCode is 1 or 2, $"health exited {loopCode} while the collector crash-looped\n{string.Join('\n', loopLines)}");
        Assert.True(code == 2, $"health exited {code}\n{string.Join('\n', lines)}\n{stderr}");
        Assert.Matches(@"^heartbeats\s+unhealthy\s+1 collector\(s\) Failed: tc-vanish", Assert.Single(lines, l => l.StartsWith("heartbeats ", StringComparison.Ordinal)));
        Assert.Contains("max_restart_attempts", failed.Reason, StringComparison.Ordinal);
        Assert.Contains(agent.Log.Split('\n'), l => l.Contains("WRN]", StringComparison.Ordinal) && l.Contains("Collector tc-vanish was killed by signal 9; restart 1 of 2", StringComparison.Ordinal));
        Assert.Contains(agent.Log.Split('\n'), l => l.Contains("ERR]", StringComparison.Ordinal) && l.Contains("Collector tc-vanish: ", StringComparison.Ordinal) && l.Contains(" -> Failed", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_Failed_collector_is_logged_at_error_and_makes_health_unhealthy_exit_2()
    {
        var env = new Dictionary<string, string>
        {
            ["DAEMONEYE_COLLECTORS__0__ID"] = "tc-failed",
            ["DAEMONEYE_COLLECTORS__0__EXECUTABLE"] = Paths.TestCollectorDll,
            ["DAEMONEYE_COLLECTORS__0__ARGUMENTS__0"] = "--crash-at-start",
            ["DAEMONEYE_PROCESS_MANAGER__MAX_RESTART_ATTEMPTS"] = "0",
        };
        await using var agent = await AgentProcess.StartAsync(env);
        var error = agent.WaitForLineAsync(l => l.Contains("ERR]", StringComparison.Ordinal) && l.Contains("Collector tc-failed: ", StringComparison.Ordinal) && l.Contains(" -> Failed", StringComparison.Ordinal), includeEarlier: true);
        await WaitForAsync(agent, "tc-failed", s => s.State == CollectorState.Failed);

        var (code, lines, stderr) = await CliProcess.RunAsync(agent.SocketPath, Patience, "health");

        Assert.True(code == 2, $"health exited {code}\n{string.Join('\n', lines)}\n{stderr}");
        Assert.Equal("overall: unhealthy", lines[^1]);
        await error.WaitAsync(Patience);
    }

    [Fact]
    public async Task Successful_rpcs_are_not_logged_one_by_one_at_information_and_a_periodic_line_gives_the_rate()
    {
        var env = new Dictionary<string, string>
        {
            ["DAEMONEYE_RPC__ACTIVITY_LOG_INTERVAL_SECONDS"] = "1",
            [TestTokens.AgentSettings("rpc-quiet").Single().Key] = TestTokens.For("rpc-quiet"),
        };
        await using var agent = await AgentProcess.StartAsync(env);
        using var collector = await TestCollectorProcess.StartAsync(agent.SocketPath, "rpc-quiet");
        // Each call is counted in the line of the interval it fell in: wait until the lines add up to the five.
        var counted = 0;
        var summary = agent.WaitForLineAsync(l =>
        {
            var match = System.Text.RegularExpressions.Regex.Match(l, @"INF\] .*RPC in the last [\d.]+ s: (\d+) call\(s\) \([\d.]+/s\), \d+ response\(s\), 0 failed");
            counted += match.Success ? int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : 0;
            return counted >= 5;
        });

        for (var i = 0; i < 5; i++)
        {
            var (code, _, stderr) = await CliProcess.RunAsync(agent.SocketPath, Patience, "collectors", "health", "rpc-quiet");
            Assert.True(code == 0, stderr);
        }

        await summary.WaitAsync(Patience);
        Assert.DoesNotContain(agent.Log.Split('\n'), l => l.Contains("<- rpc-quiet: Ok", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_failed_rpc_is_logged_at_warning_and_counted_in_the_periodic_line()
    {
        var env = new Dictionary<string, string>(TestTokens.AgentSettings("rpc-slow"))
        {
            ["DAEMONEYE_RPC__ACTIVITY_LOG_INTERVAL_SECONDS"] = "1",
        };
        await using var agent = await AgentProcess.StartAsync(env);
        // It answers a HealthCheck after 30 s: a call allowed 0.5 s times out.
        using var collector = await TestCollectorProcess.StartAsync(agent.SocketPath, "rpc-slow", "--health-delay-ms", "30000");
        var timedOut = agent.WaitForLineAsync(l => l.Contains("WRN]", StringComparison.Ordinal) && l.Contains("HealthCheck -> rpc-slow timed out after", StringComparison.Ordinal));
        var failed = agent.WaitForLineAsync(l => System.Text.RegularExpressions.Regex.IsMatch(l, @"INF\] .*RPC in the last [\d.]+ s: \d+ call\(s\) \([\d.]+/s\), \d+ response\(s\), [1-9]\d* failed \([1-9]\d* timed out,"));

        var (code, _, stderr) = await CliProcess.RunAsync(agent.SocketPath, Patience, "collectors", "health", "rpc-slow", "--timeout", "0.5");

        Assert.Equal(1, code);
        Assert.StartsWith("Timeout: ", stderr, StringComparison.Ordinal);
        await timedOut.WaitAsync(Patience);
        await failed.WaitAsync(Patience);
    }

    [Fact]
    public async Task A_task_type_no_collector_declares_and_a_publish_on_an_agent_topic_are_refused_at_once_with_the_reason()
    {
        var env = new Dictionary<string, string>
        {
            ["DAEMONEYE_COLLECTORS__0__ID"] = "tc-echo",
            ["DAEMONEYE_COLLECTORS__0__EXECUTABLE"] = Paths.TestCollectorDll,
        };
        await using var agent = await AgentProcess.StartAsync(env);
        await WaitForAsync(agent, "tc-echo", s => s.State == CollectorState.Running);

        // The task's own timeout is 120 s: an answer well before it is the agent refusing at once.
        var clock = Stopwatch.StartNew();
        var (taskCode, _, taskError) = await CliProcess.RunAsync(agent.SocketPath, Patience, "task", "run", "no.such.type", "--timeout", "120");
        var taskElapsed = clock.Elapsed;
        var (publishCode, _, publishError) = await CliProcess.RunAsync(agent.SocketPath, Patience, "publish", "control.collector.tc-echo", "stop");

        Assert.True(taskCode == 1, $"task run exited {taskCode}: {taskError}");
        Assert.True(taskElapsed < TimeSpan.FromSeconds(60), $"task run took {taskElapsed}");
        Assert.Contains("NotFound: no running collector declares task type 'no.such.type', and none is starting; declared task types: test.echo (tc-echo)", taskError, StringComparison.Ordinal);
        Assert.NotEqual(0, publishCode);
        Assert.Contains("control.collector.# and control.health.# belong to the agent and the collectors", publishError, StringComparison.Ordinal);
        Assert.Contains("collectors start|stop|restart", publishError, StringComparison.Ordinal);
        Assert.Equal(CollectorState.Running, (await IpcProbe.CollectorAsync(agent.IpcSocketPath, "tc-echo")).State);
    }

    [Fact]
    public async Task Status_counts_a_publish_nobody_subscribes_to_as_published_not_unrouted_and_delivered_once_subscribed()
    {
        // No collectors: the only bus traffic is this test's.
        await using var agent = await AgentProcess.StartAsync();
        async Task<(ulong Published, ulong Delivered, ulong Unrouted)> BrokerAsync()
        {
            var (code, lines, stderr) = await CliProcess.RunAsync(agent.SocketPath, Patience, "status", "-o", "json");
            Assert.True(code == 0, stderr);
            using var json = System.Text.Json.JsonDocument.Parse(string.Join('\n', lines));
            var broker = json.RootElement.GetProperty("broker");
            return (broker.GetProperty("published").GetUInt64(), broker.GetProperty("delivered").GetUInt64(), broker.GetProperty("unrouted").GetUInt64());
        }

        var before = await BrokerAsync();
        var (publishCode, _, publishError) = await CliProcess.RunAsync(agent.SocketPath, Patience, "publish", "events.nobody.listens", "x", "--count", "5");
        Assert.True(publishCode == 0, publishError);
        var unheard = await BrokerAsync();

        await using (var client = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = "unrouted-e2e" }))
        {
            var subscription = await client.SubscribeAsync("events.somebody.#");
            (publishCode, _, publishError) = await CliProcess.RunAsync(agent.SocketPath, Patience, "publish", "events.somebody.listens", "x", "--count", "3");
            Assert.True(publishCode == 0, publishError);
            using var timeout = new CancellationTokenSource(Patience);
            for (var i = 0; i < 3; i++)
            {
                await subscription.Reader.ReadAsync(timeout.Token);
            }
        }

        var heard = await BrokerAsync();

        // README ("Message delivery failures"): unrouted counts messages the agent failed to route, not
        // messages to a topic without subscribers, which are published and delivered to no one.
        Assert.Equal((0UL, 0UL, 0UL), (before.Unrouted, unheard.Unrouted, heard.Unrouted));
        Assert.True(unheard.Published >= before.Published + 5 && unheard.Delivered - before.Delivered < 5, $"{before} -> {unheard}: the five are published, not delivered");
        Assert.True(heard.Published >= unheard.Published + 3 && heard.Delivered >= unheard.Delivered + 3, $"{unheard} -> {heard}: the three are published and delivered");
    }

    /// <summary>Waits, woken by the agent's lifecycle and health topics, until the collector's status satisfies <paramref name="condition"/>.</summary>
    private static async Task<CollectorStatus> WaitForAsync(AgentProcess agent, string id, Func<CollectorStatus, bool> condition)
    {
        await using var client = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = "operator-watcher", AutoReconnect = false });
        var events = await client.SubscribeAsync("control.#");
        var status = await IpcProbe.CollectorAsync(agent.IpcSocketPath, id);
        using var timeout = new CancellationTokenSource(Patience);
        await using var e = events.ReadAllAsync(timeout.Token).GetAsyncEnumerator(timeout.Token);
        while (!condition(status) && await e.MoveNextAsync())
        {
            status = await IpcProbe.CollectorAsync(agent.IpcSocketPath, id);
        }

        Assert.True(condition(status), $"collector {id}: unexpected status {status}\n{agent.Log}");
        return status;
    }

    /// <summary>A unique temp directory, removed on dispose.</summary>
    private sealed class TempDirectory : IDisposable
    {
        public string Path { get; } = Directory.CreateTempSubdirectory("de-op-").FullName;

        public void Dispose()
        {
            try
            {
                Directory.Delete(Path, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    /// <summary>The real CLI with a given environment and working directory (so no config/daemoneye.yaml is picked up).</summary>
    private static class Cli
    {
        public static async Task<(int Code, IReadOnlyList<string> Stdout, string Stderr)> RunAsync(string workingDirectory, IReadOnlyDictionary<string, string> environment, params string[] args)
        {
            var start = new ProcessStartInfo("dotnet")
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
                WorkingDirectory = workingDirectory,
            };
            start.ArgumentList.Add(Paths.CliDll);
            foreach (var arg in args)
            {
                start.ArgumentList.Add(arg);
            }

            foreach (var (key, value) in environment)
            {
                start.Environment[key] = value;
            }

            using var process = Process.Start(start)!;
            try
            {
                var stdout = process.StandardOutput.ReadToEndAsync();
                var stderr = process.StandardError.ReadToEndAsync();
                using var timeout = new CancellationTokenSource(Patience);
                await process.WaitForExitAsync(timeout.Token);
                return (process.ExitCode, (await stdout).Split('\n', StringSplitOptions.RemoveEmptyEntries), (await stderr).TrimEnd());
            }
            finally
            {
                if (!process.HasExited)
                {
                    process.Kill(entireProcessTree: true);
                }
            }
        }
    }
}
