using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using DaemonEye.Client;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.Process.V1;
using DaemonEye.Protocol.Task.V1;
using DaemonEye.Protocol.V1;
using Google.Protobuf;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// The real agent supervising the real procmond (as built into the agent's collectors/procmond),
/// scanning the real /proc every 100 ms: processes this test starts and ends, an executable replaced
/// on disk while it runs, procmond killed with SIGKILL and restarted. Children block on their stdin,
/// so each one lives exactly until the test closes it: no timing assumptions.
/// </summary>
public sealed class ProcmondEndToEndTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private static string ProcmondDll => Path.Combine(Path.GetDirectoryName(Paths.AgentDll)!, "collectors", "procmond", "procmond.dll");

    private static Dictionary<string, string> WithProcmond() => new()
    {
        ["DAEMONEYE_COLLECTORS__0__ID"] = "procmond",
        ["DAEMONEYE_COLLECTORS__0__EXECUTABLE"] = ProcmondDll,
        ["DAEMONEYE_COLLECTORS__0__ARGUMENTS__0"] = "--scan-interval-ms",
        ["DAEMONEYE_COLLECTORS__0__ARGUMENTS__1"] = "100",
        ["DAEMONEYE_PROCESS_MANAGER__RESTART_BACKOFF_SECONDS"] = "0.1",
    };

    /// <summary>An agent with procmond Running and its baseline scan done (a snapshot task answered).</summary>
    private static async Task<(AgentProcess Agent, BusClient Client)> StartAsync()
    {
        var agent = await AgentProcess.StartAsync(WithProcmond());
        var client = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = "procmond-e2e" });
        var control = await client.SubscribeAsync("control.collector.lifecycle");
        await WaitForCollectorAsync(agent, control, s => s.State == CollectorState.Running);
        await SnapshotAsync(client, fresh: false);
        return (agent, client);
    }

    private static async Task<CollectorStatus> WaitForCollectorAsync(AgentProcess agent, BusSubscription events, Func<CollectorStatus, bool> condition)
    {
        var status = await IpcProbe.CollectorAsync(agent.IpcSocketPath, "procmond");
        using var timeout = new CancellationTokenSource(Patience);
        await using var e = events.ReadAllAsync(timeout.Token).GetAsyncEnumerator(timeout.Token);
        while (!condition(status) && await e.MoveNextAsync())
        {
            status = await IpcProbe.CollectorAsync(agent.IpcSocketPath, "procmond");
        }

        Assert.True(condition(status), $"procmond: unexpected status {status}\n{agent.Log}");
        return status;
    }

    private static async Task<ProcessSnapshot> SnapshotAsync(BusClient client, bool fresh)
    {
        var task = new TaskRequest { TaskId = "e2e", TaskType = "process.snapshot" };
        task.Parameters["fresh"] = fresh ? "true" : "false";
        var response = await client.CallAsync("procmond", RpcOperation.ExecuteTask, task.ToByteString(), TimeSpan.FromSeconds(30));
        Assert.True(response.Status == RpcStatus.Ok, $"{response.Error}");
        var result = TaskResult.Parser.ParseFrom(response.Payload);
        Assert.Equal("e2e", result.TaskId);
        Assert.Equal("procmond", result.CollectorId);
        Assert.Equal("daemoneye.process.v1.ProcessSnapshot", result.PayloadType);
        return ProcessSnapshot.Parser.ParseFrom(result.Payload);
    }

    /// <summary>Reads <paramref name="subscription"/> until a message of type <typeparamref name="T"/> satisfies <paramref name="match"/>.</summary>
    private static async Task<T> NextAsync<T>(BusSubscription subscription, MessageParser<T> parser, Func<T, bool> match, AgentProcess agent)
        where T : IMessage<T>
    {
        using var timeout = new CancellationTokenSource(Patience);
        try
        {
            await foreach (var message in subscription.ReadAllAsync(timeout.Token))
            {
                Assert.Equal("application/x-protobuf; messageType=" + parser.ParseFrom([]).Descriptor.FullName, message.ContentType);
                var decoded = parser.ParseFrom(message.Payload.Span);
                if (match(decoded))
                {
                    return decoded;
                }
            }
        }
        catch (OperationCanceledException)
        {
        }

        Assert.Fail($"no matching {typeof(T).Name} within {Patience}\n{agent.Log}");
        return default!;
    }

    /// <summary>A copy of cat in its own temp directory, started with its stdin open: it runs until the test closes it.</summary>
    private static (Process Process, string Executable, string Directory) StartChild(string name)
    {
        var directory = Directory.CreateTempSubdirectory("procmond-e2e-").FullName;
        var executable = Path.Combine(directory, name);
        File.Copy("/usr/bin/cat", executable);
        File.SetUnixFileMode(executable, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var process = Process.Start(new ProcessStartInfo(executable) { RedirectStandardInput = true, UseShellExecute = false })!;
        return (process, executable, directory);
    }

    private static async Task EndChildAsync(Process process, string directory)
    {
        try
        {
            if (!process.HasExited)
            {
                process.StandardInput.Close();
                using var timeout = new CancellationTokenSource(Patience);
                await process.WaitForExitAsync(timeout.Token);
            }
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill();
            }

            process.Dispose();
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public async Task A_child_process_start_and_exit_are_lifecycle_events_with_its_pid_and_executable()
    {
        var (agent, client) = await StartAsync();
        await using var _ = agent;
        await using var __ = client;
        var lifecycle = await client.SubscribeAsync("events.process.lifecycle");

        var (child, executable, directory) = StartChild("de-child");
        var pid = (uint)child.Id;
        try
        {
            var started = await NextAsync(lifecycle, ProcessLifecycle.Parser, e => e.Process.Pid == pid, agent);
            Assert.Equal(ProcessLifecycleKind.Started, started.Kind);
            Assert.Equal(executable, started.Process.Executable);
            Assert.Equal("de-child", started.Process.Name);
            Assert.Equal([executable], started.Process.CommandLine);
            Assert.Equal((uint)Environment.ProcessId, started.Process.Ppid);
            Assert.Equal("procmond", started.CollectorId);

            child.StandardInput.Close();
            var exited = await NextAsync(lifecycle, ProcessLifecycle.Parser, e => e.Process.Pid == pid, agent);
            Assert.Equal(ProcessLifecycleKind.Exited, exited.Kind);
            Assert.Equal(executable, exited.Process.Executable);
            Assert.Equal(started.Process.StartTimeUnixMs, exited.Process.StartTimeUnixMs);
            Assert.True(exited.ObservedUnixMs >= started.ObservedUnixMs);
        }
        finally
        {
            await EndChildAsync(child, directory);
        }
    }

    [Fact]
    public async Task An_executable_replaced_on_disk_while_running_is_an_integrity_event()
    {
        var (agent, client) = await StartAsync();
        await using var _ = agent;
        await using var __ = client;
        var lifecycle = await client.SubscribeAsync("events.process.lifecycle");
        var integrity = await client.SubscribeAsync("events.process.integrity");

        var (child, executable, directory) = StartChild("de-victim");
        var pid = (uint)child.Id;
        try
        {
            await NextAsync(lifecycle, ProcessLifecycle.Parser, e => e.Process.Pid == pid && e.Kind == ProcessLifecycleKind.Started, agent);
            var original = Convert.ToHexStringLower(SHA256.HashData(await File.ReadAllBytesAsync(executable)));

            // Replace it the way an attacker or a package manager would: a new file renamed over the path.
            var replacement = executable + ".new";
            await File.WriteAllTextAsync(replacement, "#!/bin/sh\necho replaced\n");
            File.Move(replacement, executable, overwrite: true);
            var current = Convert.ToHexStringLower(SHA256.HashData(await File.ReadAllBytesAsync(executable)));

            var e = await NextAsync(integrity, ProcessIntegrity.Parser, e => e.Pid == pid, agent);
            Assert.Equal(IntegrityKind.Replaced, e.Kind);
            Assert.Equal(executable, e.Executable);
            Assert.Equal(original, e.OriginalSha256);
            Assert.Equal(current, e.CurrentSha256);
            Assert.Equal("procmond", e.CollectorId);
        }
        finally
        {
            await EndChildAsync(child, directory);
        }
    }

    [Fact]
    public async Task Procmond_killed_with_SIGKILL_is_restarted_and_events_resume()
    {
        var (agent, client) = await StartAsync();
        await using var _ = agent;
        await using var __ = client;
        var control = await client.SubscribeAsync("control.collector.lifecycle");
        var before = await IpcProbe.CollectorAsync(agent.IpcSocketPath, "procmond");

        using (var kill = Process.Start("kill", ["-KILL", before.Pid.ToString(CultureInfo.InvariantCulture)]))
        {
            await kill.WaitForExitAsync();
        }

        var after = await WaitForCollectorAsync(agent, control, s => s.State == CollectorState.Running && s.Pid != before.Pid && s.Pid != 0);
        Assert.Equal(1u, after.Restarts);
        await SnapshotAsync(client, fresh: false);

        var lifecycle = await client.SubscribeAsync("events.process.lifecycle");
        var (child, executable, directory) = StartChild("de-after-restart");
        try
        {
            var started = await NextAsync(lifecycle, ProcessLifecycle.Parser, e => e.Process.Pid == (uint)child.Id, agent);
            Assert.Equal(ProcessLifecycleKind.Started, started.Kind);
            Assert.Equal(executable, started.Process.Executable);
        }
        finally
        {
            await EndChildAsync(child, directory);
        }
    }

    [Fact]
    public async Task The_snapshot_task_ps_and_an_unknown_task_type()
    {
        var (agent, client) = await StartAsync();
        await using var _ = agent;
        await using var __ = client;

        var snapshot = await SnapshotAsync(client, fresh: true);
        var self = Assert.Single(snapshot.Processes, p => p.Pid == (uint)Environment.ProcessId);
        Assert.Equal(Environment.ProcessPath, self.Executable);
        Assert.Equal("procmond", snapshot.CollectorId);
        Assert.Equal("task", snapshot.Reason);

        var unknown = new TaskRequest { TaskId = "x", TaskType = "process.kill" };
        var response = await client.CallAsync("procmond", RpcOperation.ExecuteTask, unknown.ToByteString(), TimeSpan.FromSeconds(30));
        Assert.Equal(RpcStatus.Error, response.Status);
        Assert.Equal(RpcErrorKind.InvalidOperation, response.Error.Kind);
        Assert.Equal("collector 'procmond' does not execute task type 'process.kill'; it executes: process.snapshot", response.Error.Message);

        var (code, stdout, stderr) = await CliProcess.RunAsync(agent.SocketPath, Patience, "ps", "--json");
        Assert.True(code == 0, stderr);
        using var json = JsonDocument.Parse(string.Join('\n', stdout));
        var agentRow = json.RootElement.EnumerateArray().Single(p => p.GetProperty("pid").GetInt32() == agent.Pid);
        Assert.Equal("dotnet", agentRow.GetProperty("name").GetString());
        Assert.Equal(64, agentRow.GetProperty("exe_sha256").GetString()!.Length);
        Assert.True(agentRow.GetProperty("rss_bytes").GetInt64() > 0);

        (code, stdout, stderr) = await CliProcess.RunAsync(agent.SocketPath, Patience, "ps");
        Assert.True(code == 0, stderr);
        Assert.Equal(["PID", "PPID", "USER", "NAME", "CPU%", "RSS", "EXE-SHA256"], stdout[0].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains(stdout, line => line.Split(' ', StringSplitOptions.RemoveEmptyEntries) is [var pid, ..] && pid == agent.Pid.ToString(CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task The_shipped_configuration_launches_procmond_from_the_agents_directory()
    {
        // The repository's config/daemoneye.yaml in the agent's working directory, as a newcomer
        // runs it: procmond's relative path resolves against the agent's own directory. (A first
        // agent without it makes the directory; the second starts there.)
        var first = await AgentProcess.StartAsync();
        await first.StopAsync();
        await first.DisposeAsync(keepDirectory: true);
        Directory.CreateDirectory(Path.Combine(first.Directory, "config"));
        File.Copy(Path.Combine(Paths.RepositoryRoot, "config", "daemoneye.yaml"), Path.Combine(first.Directory, "config", "daemoneye.yaml"));

        await using var agent = await AgentProcess.StartAsync(reuse: first);
        await using var client = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = "procmond-e2e" });
        var control = await client.SubscribeAsync("control.collector.lifecycle");
        var status = await WaitForCollectorAsync(agent, control, s => s.State == CollectorState.Running);
        Assert.Equal("collectors/procmond/procmond.dll", status.Executable);
        Assert.NotEmpty((await SnapshotAsync(client, fresh: false)).Processes);
        Assert.Contains($"{Path.GetDirectoryName(Paths.AgentDll)}/collectors/procmond/procmond.dll", File.ReadAllText($"/proc/{status.Pid}/cmdline").Replace('\0', ' '), StringComparison.Ordinal);

        // Healthy, as collectors list shows it (a heartbeat came in time; the shipped interval is 5 s,
        // so waiting for the first one is driven by control.#, where heartbeats go) ...
        var heartbeats = await client.SubscribeAsync("control.#");
        status = await WaitForCollectorAsync(agent, heartbeats, s => s.State == CollectorState.Running && s.LastHeartbeatUnixNanos != 0);
        Assert.Equal(CollectorHealth.Healthy, status.Health);
        var (code, stdout, stderr) = await CliProcess.RunAsync(agent.SocketPath, Patience, "collectors", "list");
        Assert.True(code == 0, stderr);
        Assert.Contains(stdout, l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries) is ["procmond", "Running", "Healthy", ..]);

        // ... and by its own HealthCheck (its first scan is done and recent).
        (code, stdout, stderr) = await CliProcess.RunAsync(agent.SocketPath, Patience, "collectors", "health", "procmond");
        Assert.True(code == 0, $"exit {code}: {string.Join('\n', stdout)} {stderr}");
        Assert.Contains(stdout, l => l.Contains("collector 'procmond' is healthy: ok", StringComparison.Ordinal));
    }

    [Fact]
    public async Task The_cli_subscribe_json_prints_a_child_s_start_and_exit_with_its_pid()
    {
        var (agent, client) = await StartAsync();
        await using var _ = agent;
        await using var __ = client;
        using var cli = new CliProcess(agent.SocketPath, "subscribed to events.process.#", "subscribe", "events.process.#", "--json");
        await cli.Marker.WaitAsync(Patience);

        var (child, executable, directory) = StartChild("de-cli-child");
        var pid = (uint)child.Id;
        try
        {
            var started = await cli.StdoutLineAsync(l => IsLifecycle(l, pid, "PROCESS_LIFECYCLE_KIND_STARTED")).WaitAsync(Patience);
            using (var json = JsonDocument.Parse(started))
            {
                var root = json.RootElement;
                Assert.Equal("events.process.lifecycle", root.GetProperty("topic").GetString());
                Assert.Equal("daemoneye.process.v1.ProcessLifecycle", root.GetProperty("event_type").GetString());
                var process = root.GetProperty("event").GetProperty("process");
                Assert.Equal(pid, process.GetProperty("pid").GetUInt32());
                Assert.Equal(executable, process.GetProperty("executable").GetString());
                Assert.Equal("de-cli-child", process.GetProperty("name").GetString());
            }

            child.StandardInput.Close();
            await cli.StdoutLineAsync(l => IsLifecycle(l, pid, "PROCESS_LIFECYCLE_KIND_EXITED")).WaitAsync(Patience);
        }
        finally
        {
            await EndChildAsync(child, directory);
        }

        static bool IsLifecycle(string line, uint pid, string kind)
        {
            try
            {
                using var json = JsonDocument.Parse(line);
                return json.RootElement.TryGetProperty("event", out var e)
                    && e.TryGetProperty("kind", out var k) && k.GetString() == kind
                    && e.TryGetProperty("process", out var p) && p.TryGetProperty("pid", out var n) && n.GetUInt32() == pid;
            }
            catch (JsonException)
            {
                return false;
            }
        }
    }

    [Fact]
    public async Task The_startup_snapshot_and_a_task_s_snapshot_are_published_on_events_process_batch_in_numbered_parts()
    {
        // procmond is started by the operator once the test subscribes, so its startup snapshot cannot
        // come before; 4096-byte parts split the real /proc into several.
        var env = WithProcmond();
        env["DAEMONEYE_COLLECTORS__0__ENABLED"] = "false";
        env["DAEMONEYE_COLLECTORS__0__ARGUMENTS__2"] = "--max-batch-part-bytes";
        env["DAEMONEYE_COLLECTORS__0__ARGUMENTS__3"] = "4096";
        await using var agent = await AgentProcess.StartAsync(env);
        await using var client = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = "batch-e2e" });
        var batches = await client.SubscribeAsync("events.process.batch");

        var start = await IpcProbe.CommandAsync(agent.IpcSocketPath, "procmond", CollectorAction.Start);
        Assert.True(start.Error is null, $"{start.Error}\n{agent.Log}");
        var startup = await PartsAsync(batches, "startup", agent);
        Assert.True(startup.Count > 1, $"one part only: {startup.Count}");
        var pids = startup.SelectMany(p => p.Processes).Select(p => p.Pid).ToList();
        Assert.Equal(pids.Count, pids.Distinct().Count());
        Assert.Contains((uint)Environment.ProcessId, pids);
        Assert.Contains((uint)agent.Pid, pids);
        Assert.All(startup, p => Assert.Equal("procmond", p.CollectorId));

        // A snapshot task publishes unless publish=false: the same processes as its answer.
        var answer = await SnapshotAsync(client, fresh: false);
        var published = await PartsAsync(batches, "task", agent);
        Assert.Equal(answer.Processes.Select(p => p.Pid).Order(), published.SelectMany(p => p.Processes).Select(p => p.Pid).Order());
    }

    /// <summary>Reads events.process.batch until every part (1..parts) of one snapshot with <paramref name="reason"/> is in.</summary>
    private static async Task<List<ProcessSnapshot>> PartsAsync(BusSubscription batches, string reason, AgentProcess agent)
    {
        var parts = new SortedDictionary<uint, ProcessSnapshot>();
        var snapshot = await NextAsync(batches, ProcessSnapshot.Parser, s =>
        {
            if (s.Reason == reason)
            {
                Assert.InRange(s.Part, 1u, s.Parts);
                Assert.True(parts.TryAdd(s.Part, s), $"part {s.Part} of {s.Parts} twice");
            }

            return parts.Count > 0 && parts.Count == parts.First().Value.Parts;
        }, agent);
        Assert.All(parts.Values, p => Assert.Equal((snapshot.Parts, snapshot.TakenUnixMs), (p.Parts, p.TakenUnixMs)));
        return [.. parts.Values];
    }
}
