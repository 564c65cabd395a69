using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// The configuration, logging and systemd behaviour of the real agent: the same validation as
/// <c>daemoneye-cli config validate</c>, unknown-key warnings, the JSON log's RPC lines, the effect of
/// rpc.* keys, Type=notify readiness and the journald console format.
/// </summary>
public sealed class ConfigurationEndToEndTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private const string BadConfig = """
        broker:
          max_subscribers: 0
          message_buffer_size: lots
        rpc:
          default_timeout_seconds: 99999
        logging:
          format: xml
        """;

    [Fact]
    public async Task The_agent_and_config_validate_report_the_same_problems_and_both_exit_2()
    {
        var directory = Directory.CreateTempSubdirectory("de-cfg-").FullName;
        try
        {
            var file = Path.Combine(directory, "bad.yaml");
            await File.WriteAllTextAsync(file, BadConfig);
            string[] expected =
            [
                "broker.max_subscribers is 0; allowed: 1 to 1000000",
                "broker.message_buffer_size is 'lots'; allowed: a whole number",
                "rpc.default_timeout_seconds is 99999; allowed: 1 to 3600",
                "logging.format is 'xml'; allowed: console, json",
            ];

            var (agentCode, agentOutput) = await AgentProcess.RunToExitAsync(null, ["--config", file], Patience);
            var (cliCode, _, cliError) = await CliProcess.RunAsync(Path.Combine(directory, "unused.sock"), Patience, "config", "validate", file);

            Assert.Equal(2, agentCode);
            Assert.Equal(2, cliCode);
            Assert.Contains("the configuration has 4 problem(s)", agentOutput, StringComparison.Ordinal);
            foreach (var message in expected)
            {
                Assert.Contains("  - " + message, agentOutput, StringComparison.Ordinal);
                Assert.Contains("error: " + message, cliError, StringComparison.Ordinal);
            }
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public async Task Unknown_keys_from_the_file_and_the_environment_are_warned_about_at_start_up_with_the_closest_known_key()
    {
        var directory = Directory.CreateTempSubdirectory("de-cfg-").FullName;
        try
        {
            var file = Path.Combine(directory, "agent.yaml");
            await File.WriteAllTextAsync(file, """
                broker:
                  max_subscriber: 5
                health:
                  probe_timeout: 3
                """);
            var env = new Dictionary<string, string> { ["DAEMONEYE_RPC__DEFAULT_TIMEOUT"] = "5" };
            await using var agent = await AgentProcess.StartAsync(env, args: ["--config", file]);
            var log = agent.Log;

            Assert.Contains($"Configuration: unknown key broker.max_subscriber (file {file}:2) is ignored; did you mean 'max_subscribers'? Known keys of broker: socket_path, startup_timeout_seconds, max_subscribers,", log, StringComparison.Ordinal);
            Assert.Contains($"Configuration: unknown key health.probe_timeout (file {file}:4) is ignored; did you mean 'probe_timeout_seconds'?", log, StringComparison.Ordinal);
            Assert.Contains("Configuration: unknown key rpc.default_timeout (environment DAEMONEYE_RPC__DEFAULT_TIMEOUT) is ignored; did you mean 'default_timeout_seconds'? Known keys of rpc: default_timeout_seconds, health_check_interval_seconds, enable_correlation_tracking, max_pending_requests", log, StringComparison.Ordinal);
            // Ignored: the typo did not set the limit.
            var status = (await IpcProbe.SendAsync(agent.IpcSocketPath, new Protocol.Ipc.V1.IpcRequest { Status = new Protocol.Ipc.V1.StatusRequest() })).Status;
            Assert.Equal(100u, status.Broker.MaxSubscribers);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    /// <summary>
    /// logging.format json + rpc.enable_correlation_tracking + rpc.health_check_interval_seconds: a
    /// collector the agent did not start is health-checked every rpc.health_check_interval_seconds,
    /// and the agent's JSON log has one line per completed call with its correlation id, operation and duration.
    /// </summary>
    [Fact]
    public async Task With_correlation_tracking_the_json_log_has_a_line_per_rpc_with_correlation_id_operation_and_duration()
    {
        var env = new Dictionary<string, string>
        {
            ["DAEMONEYE_LOGGING__FORMAT"] = "json",
            // A successful call's line is at debug (a failed one's at information).
            ["DAEMONEYE_LOGGING__LEVEL"] = "debug",
            ["DAEMONEYE_RPC__HEALTH_CHECK_INTERVAL_SECONDS"] = "1",
            ["DAEMONEYE_RPC__ENABLE_CORRELATION_TRACKING"] = "true",
            ["DAEMONEYE_PROCESS_MANAGER__HEARTBEAT_INTERVAL_SECONDS"] = "0.2",
            [TestTokens.AgentSettings("external").Single().Key] = TestTokens.For("external"),
        };
        await using var agent = await AgentProcess.StartAsync(env);
        var rpcLine = agent.WaitForLineAsync(IsRpcCompletedLine);
        // rpc.health_check_interval_seconds: three checks of the external collector, a second apart. With
        // the default (60 s) there is at most one in the 20 s allowed, so this cannot pass by chance.
        var checks = new List<TimeSpan>();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var third = agent.WaitForLineAsync(l =>
        {
            if (!IsRpcCompletedLine(l) || !l.Contains("\"Operation\":\"HealthCheck\"", StringComparison.Ordinal) || !l.Contains("\"CollectorId\":\"external\"", StringComparison.Ordinal))
            {
                return false;
            }

            checks.Add(clock.Elapsed);
            return checks.Count == 3;
        });
        using var collector = await TestCollectorProcess.StartAsync(agent.SocketPath, "external");

        await third.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.True(checks[2] - checks[0] >= TimeSpan.FromSeconds(1.5), $"3 checks within {checks[2] - checks[0]}; the interval is 1 s");
        using var json = JsonDocument.Parse(await rpcLine.WaitAsync(Patience));
        var line = json.RootElement;
        Assert.Equal("HealthCheck", line.GetProperty("Operation").GetString());
        Assert.Equal("external", line.GetProperty("CollectorId").GetString());
        Assert.Equal("Ok", line.GetProperty("Status").GetString());
        Assert.Equal("Debug", line.GetProperty("@l").GetString());
        Assert.Matches("^[0-9a-f]{32}$", line.GetProperty("CorrelationId").GetString());
        Assert.True(line.GetProperty("DurationMs").GetDouble() > 0);
        Assert.Equal("DaemonEye.Gateway.Rpc.RpcRouter", line.GetProperty("SourceContext").GetString());

        // Every line of the run is one JSON object.
        foreach (var text in agent.Log.Split('\n').Where(l => l.StartsWith('{')))
        {
            using var _ = JsonDocument.Parse(text);
        }
    }

    [Fact]
    public async Task Without_correlation_tracking_completed_rpcs_are_not_logged()
    {
        var env = new Dictionary<string, string>
        {
            ["DAEMONEYE_LOGGING__FORMAT"] = "json",
            ["DAEMONEYE_RPC__ENABLE_CORRELATION_TRACKING"] = "false",
            [TestTokens.AgentSettings("quiet").Single().Key] = TestTokens.For("quiet"),
        };
        await using var agent = await AgentProcess.StartAsync(env);
        using var collector = await TestCollectorProcess.StartAsync(agent.SocketPath, "quiet");

        var (code, stdout, stderr) = await CliProcess.RunAsync(agent.SocketPath, Patience, "collectors", "health", "quiet");

        Assert.True(code == 0, stderr);
        Assert.Contains(stdout, l => l.Contains("quiet", StringComparison.Ordinal));
        Assert.DoesNotContain(agent.Log.Split('\n'), IsRpcCompletedLine);
    }

    [Fact]
    public async Task Ipc_socket_path_and_logging_level_take_effect()
    {
        var directory = Directory.CreateTempSubdirectory("de-keys-").FullName;
        try
        {
            var ipc = Path.Combine(directory, "control.sock");
            await using var agent = await AgentProcess.StartAsync(new Dictionary<string, string>
            {
                ["DAEMONEYE_IPC__SOCKET_PATH"] = ipc,
                ["DAEMONEYE_LOGGING__LEVEL"] = "warning",
            });

            // ipc.socket_path: the IPC socket is where the key says, and answers.
            using (var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
            {
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(ipc));
            }

            Assert.False(File.Exists(agent.IpcSocketPath), "ipc.sock beside the bus socket exists although ipc.socket_path names another path");

            // logging.level warning: the information lines of start-up are gone; the ready line is kept on purpose.
            Assert.DoesNotContain("Event bus listening on", agent.Log, StringComparison.Ordinal);
            Assert.DoesNotContain("IPC listening on", agent.Log, StringComparison.Ordinal);
            Assert.Contains("daemoneye-agent ready", agent.Log, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    /// <summary>Type=notify: the agent sends READY=1 to $NOTIFY_SOCKET, and at that moment both sockets accept.</summary>
    [Fact]
    public async Task Under_systemd_READY_1_arrives_once_both_sockets_accept_and_STOPPING_1_on_SIGTERM()
    {
        var directory = Directory.CreateTempSubdirectory("de-notify-").FullName;
        var notifyPath = Path.Combine(directory, "notify.sock");
        using var notify = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        notify.Bind(new UnixDomainSocketEndPoint(notifyPath));
        try
        {
            var starting = AgentProcess.StartAsync(new Dictionary<string, string> { ["NOTIFY_SOCKET"] = notifyPath });

            var ready = await ReceiveAsync(notify);
            // Nothing has connected yet: both sockets must accept right now.
            var busPath = await ReadyStatusSocketAsync(ready, "serving ");
            using (var bus = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
            using (var ipc = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
            {
                await bus.ConnectAsync(new UnixDomainSocketEndPoint(busPath));
                await ipc.ConnectAsync(new UnixDomainSocketEndPoint(Path.Combine(Path.GetDirectoryName(busPath)!, "ipc.sock")));
            }

            await using var agent = await starting.WaitAsync(Patience);
            Assert.Contains("READY=1", ready, StringComparison.Ordinal);
            Assert.Contains($"MAINPID={agent.Pid}", ready, StringComparison.Ordinal);

            await agent.StopAsync();
            var stopping = await ReceiveAsync(notify);
            Assert.Contains("STOPPING=1", stopping, StringComparison.Ordinal);
            Assert.Equal(0, agent.ExitCode);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    /// <summary>
    /// Under systemd with stdout on the journal ($JOURNAL_STREAM names stdout's own socket, as systemd
    /// sets it): every line is "&lt;priority&gt;SourceContext: message" (journald takes the priority), with
    /// no timestamp and no colour.
    /// </summary>
    [Fact]
    public async Task With_stdout_on_the_journal_every_line_has_a_syslog_priority_prefix_and_no_timestamp_or_colour()
    {
        await using var agent = await JournalStreamAgent.StartAsync(new Dictionary<string, string> { ["DAEMONEYE_RPC__DEFAULT_TIMEOUT"] = "5" });
        Assert.Equal(0, await agent.StopAsync());
        var lines = agent.Lines;

        Assert.Contains(lines, l => l.StartsWith("<6>DaemonEye.Silo.HostingExtensions.ReadyAnnouncer: daemoneye-agent ready: ", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("<4>DaemonEye.Silo.HostingExtensions.ConfigurationWarningLogger: Configuration: unknown key rpc.default_timeout ", StringComparison.Ordinal));
        // "<N>Source.Context: message": nothing (a timestamp, a level) between the priority and the source.
        Assert.All(lines, l => Assert.Matches(@"^<[0-7]>[A-Za-z][^\s\[]*: ", l));
        Assert.DoesNotContain(lines, l => l.Contains('\u001b', StringComparison.Ordinal));
    }

    /// <summary>The router's "RPC completed" line (event id 3003) in compact JSON.</summary>
    private static bool IsRpcCompletedLine(string line) => line.Contains("\"EventId\":{\"Id\":3003", StringComparison.Ordinal);

    private static Task<string> ReadyStatusSocketAsync(string ready, string prefix)
    {
        var status = ready.Split('\n').Single(l => l.StartsWith("STATUS=", StringComparison.Ordinal));
        var serving = status["STATUS=".Length..];
        Assert.StartsWith(prefix, serving, StringComparison.Ordinal);
        return Task.FromResult(serving[prefix.Length..].Split(" and ")[0]);
    }

    private static async Task<string> ReceiveAsync(Socket socket)
    {
        var buffer = new byte[4096];
        using var timeout = new CancellationTokenSource(Patience);
        var n = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
        return Encoding.UTF8.GetString(buffer, 0, n);
    }
}
