using DaemonEye.Client;
using DaemonEye.Protocol.Collector.V1;
using DaemonEye.Protocol.Filesystem.V1;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.Task.V1;
using DaemonEye.Protocol.V1;
using Google.Protobuf;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// The real agent supervising the real fsmond (as built into the agent's collectors/fsmond): the
/// shipped configuration, a change made by this test process reported on the bus with its pid, the
/// file.snapshot and file.hash tasks, and the inotify fallback when fsmond runs without
/// CAP_SYS_ADMIN (a real refusal: setpriv drops it from the bounding set).
/// </summary>
public sealed class FsmondEndToEndTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(90);

    private static string FsmondDll => Path.Combine(Path.GetDirectoryName(Paths.AgentDll)!, "collectors", "fsmond", "fsmond.dll");

    private static async Task<CollectorStatus> RunningAsync(AgentProcess agent, BusClient client, string id)
    {
        var heartbeats = await client.SubscribeAsync($"control.health.heartbeat.{id}");
        var control = await client.SubscribeAsync("control.collector.lifecycle");
        var status = await IpcProbe.CollectorAsync(agent.IpcSocketPath, id);
        using var timeout = new CancellationTokenSource(Patience);
        await using var e = control.ReadAllAsync(timeout.Token).GetAsyncEnumerator(timeout.Token);
        while (status.State != CollectorState.Running && await e.MoveNextAsync())
        {
            status = await IpcProbe.CollectorAsync(agent.IpcSocketPath, id);
        }

        Assert.True(status.State == CollectorState.Running, $"{id}: {status}\n{agent.Log}");

        // Registered on the bus: its first heartbeat follows the registration at once.
        await heartbeats.ReadAllAsync(timeout.Token).GetAsyncEnumerator(timeout.Token).MoveNextAsync();
        return status;
    }

    private static async Task<T> NextAsync<T>(BusSubscription subscription, MessageParser<T> parser, Func<T, bool> match, AgentProcess agent)
        where T : IMessage<T>
    {
        using var timeout = new CancellationTokenSource(Patience);
        try
        {
            await foreach (var message in subscription.ReadAllAsync(timeout.Token))
            {
                if (message.ContentType.EndsWith(parser.ParseFrom([]).Descriptor.FullName, StringComparison.Ordinal) && parser.ParseFrom(message.Payload.Span) is var t && match(t))
                {
                    return t;
                }
            }
        }
        catch (OperationCanceledException)
        {
        }

        Assert.Fail($"no matching {typeof(T).Name} within {Patience}\n{agent.Log}");
        return default!;
    }

    private static async Task<HealthCheckResponse> HealthAsync(BusClient client, AgentProcess agent)
    {
        var response = await client.CallAsync("fsmond", RpcOperation.HealthCheck, null, TimeSpan.FromSeconds(30));
        Assert.True(response.Status == RpcStatus.Ok, $"{response.Error}\n{agent.Log}");
        return HealthCheckResponse.Parser.ParseFrom(response.Payload);
    }

    [Fact]
    public async Task The_shipped_configuration_runs_fsmond_and_a_new_executable_in_tmp_is_reported_with_its_writer()
    {
        var first = await AgentProcess.StartAsync();
        await first.StopAsync();
        await first.DisposeAsync(keepDirectory: true);
        Directory.CreateDirectory(Path.Combine(first.Directory, "config"));
        File.Copy(Path.Combine(Paths.RepositoryRoot, "config", "daemoneye.yaml"), Path.Combine(first.Directory, "config", "daemoneye.yaml"));

        await using var agent = await AgentProcess.StartAsync(reuse: first);
        await using var client = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = "fsmond-e2e" });
        var status = await RunningAsync(agent, client, "fsmond");
        Assert.Equal("collectors/fsmond/fsmond.dll", status.Executable);
        var health = await HealthAsync(client, agent);
        Assert.True(health.Healthy, health.Status);
        Assert.Equal("fanotify", health.Details["source"]);

        var anomalies = await client.SubscribeAsync("events.filesystem.#");
        var dir = Directory.CreateTempSubdirectory("de-fsmond-e2e-").FullName;
        try
        {
            var script = Path.Combine(dir, "dropper.sh");
            File.WriteAllText(script, "#!/bin/sh\necho hi\n");
            var anomaly = await NextAsync(anomalies, FileAnomaly.Parser, a => a.Kind == AnomalyKind.ExecutableInTemp && a.Path == script, agent);
            Assert.Equal((uint)Environment.ProcessId, anomaly.Actor.Pid);
            Assert.Equal(Attribution.Known, anomaly.Actor.Attribution);

            // The same change through the file.snapshot task, and the file's hash through file.hash.
            var task = new TaskRequest { TaskId = "e2e", TaskType = "file.snapshot" };
            var response = await client.CallAsync("fsmond", RpcOperation.ExecuteTask, task.ToByteString(), TimeSpan.FromSeconds(30));
            Assert.True(response.Status == RpcStatus.Ok, $"{response.Error}");
            var snapshot = FileSnapshot.Parser.ParseFrom(TaskResult.Parser.ParseFrom(response.Payload).Payload);
            Assert.Contains(snapshot.Events, e => e.Path == script && e.Executable && e.Actor.Pid == (uint)Environment.ProcessId);

            task = new TaskRequest { TaskId = "e2e-hash", TaskType = "file.hash" };
            task.Parameters["path"] = script;
            response = await client.CallAsync("fsmond", RpcOperation.ExecuteTask, task.ToByteString(), TimeSpan.FromSeconds(30));
            Assert.True(response.Status == RpcStatus.Ok, $"{response.Error}");
            var hash = FileHash.Parser.ParseFrom(TaskResult.Parser.ParseFrom(response.Payload).Payload);
            Assert.Equal(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(script))), hash.Sha256);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [RootFact]
    public async Task Without_CAP_SYS_ADMIN_fsmond_falls_back_to_inotify_and_says_so()
    {
        var dir = Directory.CreateTempSubdirectory("de-fsmond-e2e-").FullName;
        try
        {
            var env = new Dictionary<string, string>
            {
                ["DAEMONEYE_COLLECTORS__0__ID"] = "fsmond",
                ["DAEMONEYE_COLLECTORS__0__EXECUTABLE"] = "/usr/bin/setpriv",
                ["DAEMONEYE_COLLECTORS__0__ARGUMENTS__0"] = "--bounding-set=-sys_admin",
                ["DAEMONEYE_COLLECTORS__0__ARGUMENTS__1"] = "dotnet",
                ["DAEMONEYE_COLLECTORS__0__ARGUMENTS__2"] = FsmondDll,
                ["DAEMONEYE_COLLECTORS__0__ARGUMENTS__3"] = "--watch",
                ["DAEMONEYE_COLLECTORS__0__ARGUMENTS__4"] = dir + "/**",
                ["DAEMONEYE_COLLECTORS__0__ARGUMENTS__5"] = "--integrity=",
                ["DAEMONEYE_COLLECTORS__0__ARGUMENTS__6"] = "--executable-watch=",
            };
            await using var agent = await AgentProcess.StartAsync(env);
            await using var client = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = "fsmond-e2e" });
            await RunningAsync(agent, client, "fsmond");
            var health = await HealthAsync(client, agent);
            // Unprivileged fanotify_init succeeds (Linux 5.13+); the filesystem mark is what is refused.
            Assert.StartsWith("inotify (fanotify refused: fanotify_mark(", health.Details["source"], StringComparison.Ordinal);
            Assert.Contains("no process attribution", health.Status, StringComparison.Ordinal);
            await agent.WaitForLineAsync(l => l.Contains("fsmond uses inotify, not fanotify", StringComparison.Ordinal), includeEarlier: true).WaitAsync(Patience);

            var events = await client.SubscribeAsync("events.filesystem.#");
            var file = Path.Combine(dir, "x");
            new FileStream(file, FileMode.CreateNew).Dispose();
            var created = await NextAsync(events, FileEvent.Parser, e => e.Path == file, agent);
            Assert.Equal((FileEventKind.Created, 0u, Attribution.NotAvailable, "inotify"), (created.Kind, created.Actor.Pid, created.Actor.Attribution, created.Source));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
