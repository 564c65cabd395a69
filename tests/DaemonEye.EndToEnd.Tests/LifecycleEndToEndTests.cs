using DaemonEye.Client;
using DaemonEye.Protocol.Collector.V1;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.V1;
using Google.Protobuf;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// Issue 22: lifecycle and configuration RPCs from a client on the bus, served by the agent's process
/// manager (the same code as the IPC commands), and the configuration reloaded on SIGHUP. Real agent,
/// real collector processes, real signals; every wait is on an event or an answer, never on a clock.
/// </summary>
public sealed class LifecycleEndToEndTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private static async Task<LifecycleResponse> CallAsync(BusClient client, string id, RpcOperation operation, IMessage? payload = null)
    {
        var response = await client.CallAsync(id, operation, payload?.ToByteString(), TimeSpan.FromSeconds(50)).WaitAsync(Patience);
        Assert.True(response.Status == RpcStatus.Ok, $"{operation}: {response.Error}");
        return LifecycleResponse.Parser.ParseFrom(response.Payload);
    }

    [Fact]
    public async Task From_the_bus_Stop_is_not_restarted_Start_gives_a_new_pid_and_Restart_a_new_pid_without_counting_a_restart()
    {
        const string Id = "tc-bus-life";
        await using var agent = await AgentProcess.StartAsync(SupervisedCollectorEndToEndTests.TestCollector(Id));
        var (watcher, events) = await SupervisedCollectorEndToEndTests.WatchAsync(agent);
        await using var watching = watcher;
        var running = await SupervisedCollectorEndToEndTests.WaitForAsync(events, agent, Id, s => s.State == CollectorState.Running);
        await using var client = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = "lifecycle-caller" });

        // Stop, gracefully: the collector's own clean exit; the process manager records a requested stop.
        var stopped = await CallAsync(client, Id, RpcOperation.Stop, new StopRequest { Graceful = true });
        Assert.Equal(("Stopped", 0u, 0u), (stopped.State, stopped.Pid, stopped.RestartCount));
        Assert.Contains("exited on request", stopped.Message, StringComparison.Ordinal);
        Assert.Contains("exit code 0", stopped.Message, StringComparison.Ordinal);
        // The exit has been handled when the answer comes (one gate): Stopped, not restarted, the process gone.
        var after = await IpcProbe.CollectorAsync(agent.IpcSocketPath, Id);
        Assert.Equal((CollectorState.Stopped, 0u, 0u), (after.State, after.Pid, after.Restarts));
        Assert.False(Directory.Exists($"/proc/{running.Pid}"), $"pid {running.Pid} still exists");

        // Start: Running again, with a new pid.
        var started = await CallAsync(client, Id, RpcOperation.Start);
        Assert.Equal("Running", started.State);
        Assert.NotEqual(0u, started.Pid);
        Assert.NotEqual(running.Pid, started.Pid);

        // Restart: a new pid, and the restart count stays 0 (requested, not a crash).
        var restarted = await CallAsync(client, Id, RpcOperation.Restart);
        Assert.Equal(("Running", 0u), (restarted.State, restarted.RestartCount));
        Assert.NotEqual(started.Pid, restarted.Pid);
        var status = await IpcProbe.CollectorAsync(agent.IpcSocketPath, Id);
        Assert.Equal((CollectorState.Running, restarted.Pid, 0u), (status.State, status.Pid, status.Restarts));
        Assert.Contains($"RPC Stop of collector {Id}", agent.Log, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Collectors_config_sets_procmonds_scan_interval_live_announces_it_and_refuses_a_bad_value_with_procmonds_message()
    {
        var env = new Dictionary<string, string>
        {
            ["DAEMONEYE_COLLECTORS__0__ID"] = "procmond",
            ["DAEMONEYE_COLLECTORS__0__EXECUTABLE"] = Path.Combine(Path.GetDirectoryName(Paths.AgentDll)!, "collectors", "procmond", "procmond.dll"),
            // The heartbeats pace the scan-rate checks below (a phase barrier, not a sleep).
            ["DAEMONEYE_PROCESS_MANAGER__HEARTBEAT_INTERVAL_SECONDS"] = "0.5",
        };
        await using var agent = await AgentProcess.StartAsync(env);
        var (watcher, events) = await SupervisedCollectorEndToEndTests.WatchAsync(agent);
        await using var watching = watcher;
        await SupervisedCollectorEndToEndTests.WaitForAsync(events, agent, "procmond", s => s.State == CollectorState.Running);
        await using var announcements = await watcher.SubscribeAsync("control.collector.config");
        await using var heartbeats = await watcher.SubscribeAsync("control.health.heartbeat.procmond");
        await watcher.FlushAsync().WaitAsync(Patience);

        async Task<long> ScansAsync()
        {
            var answer = await watcher.CallAsync("procmond", RpcOperation.HealthCheck).WaitAsync(Patience);
            Assert.True(answer.Status == RpcStatus.Ok, answer.Error?.Message);
            return long.Parse(HealthCheckResponse.Parser.ParseFrom(answer.Payload).Details["scans"], System.Globalization.CultureInfo.InvariantCulture);
        }

        // procmond's scans counted between two of its answers, read at each heartbeat until `enough` holds.
        // A timer of period P ticks at most W/P + 2 times in a window W (one tick may be pending at its
        // start); the window is measured from before the first call to after the last answer, so it holds
        // the window procmond counted in. Only count relations are asserted: nothing depends on how fast
        // the machine is, except that 250 ms scans must eventually outnumber what 1000 ms ones could do.
        async Task<(long Scans, double WindowMs)> CountScansAsync(Func<long, double, bool> enough)
        {
            using var deadline = new CancellationTokenSource(Patience);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var first = await ScansAsync();
            while (true)
            {
                await heartbeats.Reader.ReadAsync(deadline.Token);
                var scans = await ScansAsync() - first;
                var window = clock.Elapsed.TotalMilliseconds;
                if (enough(scans, window))
                {
                    return (scans, window);
                }
            }
        }

        // At 1000 ms: a few scans, never more than the period allows.
        var (slowScans, slowWindow) = await CountScansAsync((scans, _) => scans >= 3);
        Assert.True(slowScans <= (slowWindow / 1000) + 2, $"{slowScans} scans in {slowWindow:F0} ms at scan_interval_ms=1000");

        var (code, stdout, stderr) = await CliProcess.RunAsync(agent.SocketPath, Patience, "collectors", "config", "procmond");
        Assert.True(code == 0, stderr);
        Assert.Contains("scan_interval_ms = 1000", stdout);

        (code, stdout, stderr) = await CliProcess.RunAsync(agent.SocketPath, Patience, "collectors", "config", "procmond", "--set", "scan_interval_ms=250");
        Assert.True(code == 0, stderr);
        Assert.Contains("scan_interval_ms = 250", stdout);

        using var timeout = new CancellationTokenSource(Patience);
        var message = await announcements.Reader.ReadAsync(timeout.Token);
        var changed = ConfigChanged.Parser.ParseFrom(message.Payload.Span);
        Assert.Equal("procmond", changed.CollectorId);
        Assert.Equal("250", changed.Changed["scan_interval_ms"]);
        Assert.Equal("250", changed.Settings["scan_interval_ms"]);

        // Live: procmond's own report of its settings (its HealthCheck answer) says so.
        var health = await watcher.CallAsync("procmond", RpcOperation.HealthCheck).WaitAsync(Patience);
        Assert.Equal("250", HealthCheckResponse.Parser.ParseFrom(health.Payload).Details["setting.scan_interval_ms"]);

        // Live in its behaviour: procmond now scans more often than every 1000 ms could, and no more often than every 250 ms.
        var (fastScans, fastWindow) = await CountScansAsync((scans, window) => scans > (window / 1000) + 2 && scans >= 8);
        Assert.True(fastScans <= (fastWindow / 250) + 2, $"{fastScans} scans in {fastWindow:F0} ms at scan_interval_ms=250");

        // A bad value: refused with procmond's own message; nothing announced, nothing changed.
        (code, _, stderr) = await CliProcess.RunAsync(agent.SocketPath, Patience, "collectors", "config", "procmond", "--set", "scan_interval_ms=10");
        Assert.Equal(1, code);
        Assert.StartsWith("InvalidOperation: scan_interval_ms is '10'; allowed: a number from 50 to 3600000", stderr, StringComparison.Ordinal);
        (code, stdout, _) = await CliProcess.RunAsync(agent.SocketPath, Patience, "collectors", "config", "procmond");
        Assert.Contains("scan_interval_ms = 250", stdout);
        Assert.False(announcements.Reader.TryRead(out var unexpected), $"announced: {unexpected?.Topic}");
    }

    private static async Task SighupAsync(AgentProcess agent)
    {
        using var kill = System.Diagnostics.Process.Start("kill", ["-HUP", agent.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        await kill.WaitForExitAsync().WaitAsync(Patience);
        Assert.Equal(0, kill.ExitCode);
    }

    [Fact]
    public async Task SIGHUP_with_a_file_that_adds_a_collector_starts_only_it_and_an_invalid_file_changes_nothing()
    {
        var directory = Directory.CreateTempSubdirectory("de-hup-").FullName;
        try
        {
            var file = Path.Combine(directory, "agent.yaml");
            static string Collector(string id) => $"""
                  - id: {id}
                    executable: {Paths.TestCollectorDll}
                """;
            await File.WriteAllTextAsync(file, "collectors:\n" + Collector("tc-hup-a"));
            await using var agent = await AgentProcess.StartAsync(args: ["--config", file]);
            var (watcher, events) = await SupervisedCollectorEndToEndTests.WatchAsync(agent);
            await using var watching = watcher;
            var first = await SupervisedCollectorEndToEndTests.WaitForAsync(events, agent, "tc-hup-a", s => s.State == CollectorState.Running);

            await File.WriteAllTextAsync(file, "collectors:\n" + Collector("tc-hup-a") + "\n" + Collector("tc-hup-b"));
            var reloaded = agent.WaitForLineAsync(l => l.Contains("Configuration reloaded:", StringComparison.Ordinal));
            await SighupAsync(agent);
            Assert.Contains("added [tc-hup-b], removed [], changed []", await reloaded.WaitAsync(Patience), StringComparison.Ordinal);
            await SupervisedCollectorEndToEndTests.WaitForAsync(events, agent, "tc-hup-b", s => s.State == CollectorState.Running);
            var untouched = await IpcProbe.CollectorAsync(agent.IpcSocketPath, "tc-hup-a");
            Assert.Equal((CollectorState.Running, first.Pid, 0u), (untouched.State, untouched.Pid, untouched.Restarts));

            // Invalid: two problems, both logged; nothing changes (tc-hup-b is not removed, nothing restarts).
            await File.WriteAllTextAsync(file, "process_manager:\n  max_restart_attempts: -1\ncollectors:\n" + Collector("tc-hup-a") + "\n  - id: Bad.Id\n    executable: /nonexistent\n");
            var refused = agent.WaitForLineAsync(l => l.Contains("Configuration reload refused", StringComparison.Ordinal));
            var restartKey = agent.WaitForLineAsync(l => l.Contains("Configuration reload: process_manager.max_restart_attempts", StringComparison.Ordinal));
            await SighupAsync(agent);
            await refused.WaitAsync(Patience);
            await restartKey.WaitAsync(Patience);
            var list = (await IpcProbe.SendAsync(agent.IpcSocketPath, new IpcRequest { ListCollectors = new ListCollectorsRequest() })).ListCollectors.Collectors;
            Assert.Equal(["tc-hup-a", "tc-hup-b"], list.Select(c => c.Id));
            Assert.All(list, c => Assert.Equal(CollectorState.Running, c.State));
            Assert.Equal(first.Pid, list[0].Pid);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public async Task SIGHUP_applies_limits_and_the_log_level_live_names_what_needs_a_restart_and_an_invalid_file_changes_nothing()
    {
        var directory = Directory.CreateTempSubdirectory("de-hup-live-").FullName;
        try
        {
            var file = Path.Combine(directory, "agent.yaml");
            static string Config(int maxSubscriptions, string level, int probeTimeout) => $"""
                broker:
                  max_subscriptions_per_connection: {maxSubscriptions}
                health:
                  probe_timeout_seconds: {probeTimeout}
                logging:
                  level: {level}
                """;
            static bool IsIpcDebugLine(string line) => line.Contains("IPC ", StringComparison.Ordinal) && line.Contains(" from pid ", StringComparison.Ordinal);
            await File.WriteAllTextAsync(file, Config(2, "information", 5));
            await using var agent = await AgentProcess.StartAsync(args: ["--config", file]);

            async Task<int> AcceptedSubscriptionsAsync(string clientId)
            {
                await using var client = await RawBus.ConnectAsync(agent.SocketPath, clientId, Protocol.V1.Role.Client);
                for (var i = 0; i < 10; i++)
                {
                    var answer = await client.SubscribeAsync($"events.live.{clientId}.s{i}");
                    if (answer.BodyCase != Envelope.BodyOneofCase.SubscribeAck)
                    {
                        Assert.Equal(Protocol.V1.ErrorCode.LimitExceeded, answer.Error.Code);
                        Assert.Contains("broker.max_subscriptions_per_connection", answer.Error.Message, StringComparison.Ordinal);
                        return i;
                    }
                }

                return 10;
            }

            // At start: two subscriptions per connection; information, so an IPC request logs no debug line.
            Assert.Equal(2, await AcceptedSubscriptionsAsync("before"));
            await IpcProbe.SendAsync(agent.IpcSocketPath, new IpcRequest { ListCollectors = new ListCollectorsRequest() });
            Assert.DoesNotContain(agent.Log.Split('\n'), IsIpcDebugLine);

            // Reload: four subscriptions, debug; the health probe timeout needs a restart and is said to.
            await File.WriteAllTextAsync(file, Config(4, "debug", 7));
            var reloaded = agent.WaitForLineAsync(l => l.Contains("Configuration reloaded:", StringComparison.Ordinal));
            var restartNamed = agent.WaitForLineAsync(l => l.Contains("Configuration reload: health.probe_timeout_seconds changed; it takes effect only when the agent restarts", StringComparison.Ordinal));
            await SighupAsync(agent);
            Assert.Contains("applied live: broker.max_subscriptions_per_connection, logging.level; needs an agent restart: health.probe_timeout_seconds",
                await reloaded.WaitAsync(Patience), StringComparison.Ordinal);
            await restartNamed.WaitAsync(Patience);
            Assert.Contains("Log level changed from Information to Debug", agent.Log, StringComparison.Ordinal);

            Assert.Equal(4, await AcceptedSubscriptionsAsync("after"));
            var debugLine = agent.WaitForLineAsync(IsIpcDebugLine);
            await IpcProbe.SendAsync(agent.IpcSocketPath, new IpcRequest { ListCollectors = new ListCollectorsRequest() });
            await debugLine.WaitAsync(Patience);

            // An invalid file (a bad level and a bad limit): refused, both named, nothing changes.
            await File.WriteAllTextAsync(file, Config(0, "loud", 7));
            var refused = agent.WaitForLineAsync(l => l.Contains("Configuration reload refused: the file has 2 problem(s)", StringComparison.Ordinal));
            var levelError = agent.WaitForLineAsync(l => l.Contains("Configuration reload: logging.level is 'loud'", StringComparison.Ordinal));
            var limitError = agent.WaitForLineAsync(l => l.Contains("Configuration reload: broker.max_subscriptions_per_connection is 0", StringComparison.Ordinal));
            await SighupAsync(agent);
            await Task.WhenAll(refused, levelError, limitError).WaitAsync(Patience);
            Assert.Equal(4, await AcceptedSubscriptionsAsync("refused"));
            debugLine = agent.WaitForLineAsync(IsIpcDebugLine);
            await IpcProbe.SendAsync(agent.IpcSocketPath, new IpcRequest { ListCollectors = new ListCollectorsRequest() });
            await debugLine.WaitAsync(Patience);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public async Task A_collector_listed_in_collector_callers_restarts_another_and_an_unlisted_one_is_refused()
    {
        const string Target = "tc-callee";
        var env = SupervisedCollectorEndToEndTests.TestCollector(Target);
        foreach (var (key, value) in TestTokens.AgentSettings("tc-boss", "tc-other"))
        {
            env[key] = value;
        }

        env["DAEMONEYE_SECURITY__COLLECTOR_CALLERS__0"] = "tc-boss";
        await using var agent = await AgentProcess.StartAsync(env);
        var (watcher, events) = await SupervisedCollectorEndToEndTests.WatchAsync(agent);
        await using var watching = watcher;
        var running = await SupervisedCollectorEndToEndTests.WaitForAsync(events, agent, Target, s => s.State == CollectorState.Running);

        static RpcRequest Restart(string id) => new()
        {
            Correlation = new CorrelationMetadata { CorrelationId = id, RootCorrelationId = id },
            Operation = RpcOperation.Restart,
            Target = "control.collector." + Target,
            TimeoutMs = 50_000,
        };

        // Not listed: refused, and the target runs on with its pid.
        await using (var other = await RawBus.ConnectAsync(agent.SocketPath, "tc-other", Role.Collector, TestTokens.For("tc-other"), "colour:blue", "capacity:2"))
        {
            // Capability negotiation both ways, over the socket: what was granted, and what was refused with the reason.
            var welcome = other.HelloReply.Welcome;
            Assert.Contains("capacity:2", welcome.Granted);
            Assert.DoesNotContain("rpc:operate", welcome.Granted);
            var refusal = Assert.Single(welcome.Refused);
            Assert.Equal("colour:blue", refusal.Capability);
            Assert.StartsWith("not a capability the agent knows; known kinds: task:<task type>", refusal.Reason, StringComparison.Ordinal);

            var refused = await other.CallAsync(Restart("other-restart")).WaitAsync(Patience);
            Assert.Equal((RpcStatus.Error, RpcErrorKind.NotAuthorized), (refused.Status, refused.Error.Kind));
            Assert.Contains("rule collector.rpc_call", refused.Error.Message, StringComparison.Ordinal);
            Assert.Contains("security.collector_callers", refused.Error.Message, StringComparison.Ordinal);
        }

        Assert.Equal(running.Pid, (await IpcProbe.CollectorAsync(agent.IpcSocketPath, Target)).Pid);

        // Listed: Welcome grants it rpc:operate, and its Restart is served by the process manager.
        await using var boss = await RawBus.ConnectAsync(agent.SocketPath, "tc-boss", Role.Collector, TestTokens.For("tc-boss"));
        Assert.Contains("rpc:operate", boss.HelloReply.Welcome.Granted);
        var restarted = await boss.CallAsync(Restart("boss-restart")).WaitAsync(Patience);
        Assert.True(restarted.Status == RpcStatus.Ok, restarted.Error?.Message);
        var lifecycle = LifecycleResponse.Parser.ParseFrom(restarted.Payload);
        Assert.Equal(("Running", 0u), (lifecycle.State, lifecycle.RestartCount));
        Assert.NotEqual(running.Pid, lifecycle.Pid);
    }
}
