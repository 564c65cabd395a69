using DaemonEye.Client;
using DaemonEye.Hosting;
using DaemonEye.Protocol.Ipc.V1;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// Who may connect, decided by the kernel's word (SO_PEERCRED) on both sockets. The foreign client
/// is the real daemoneye-cli run as uid 65534 (nobody) by setpriv, from a copy staged where that uid
/// can read it (<see cref="OtherUserCli"/>: the checkout may be private). It gets through the file system
/// because the sockets are shared with group 65534 (security.socket_group), so each refusal here
/// really comes from the peer-credential check and not from file permissions.
/// </summary>
public sealed class PeerCredentialsEndToEndTests
{
    private const uint Nobody = OtherUserCli.Nobody;
    private const uint NoGroup = OtherUserCli.NoGroup;
    private static readonly string[] AsNobody = OtherUserCli.AsNobody;
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    /// <summary>An agent whose socket directory other users can reach: its temp directory becomes 0711
    /// (pass through, not list); the socket directory inside is the agent's to guard.</summary>
    private static async Task<AgentProcess> StartSharedAgentAsync(Dictionary<string, string> settings)
    {
        var agent = await AgentProcess.StartAsync(settings);
        File.SetUnixFileMode(agent.Directory, (UnixFileMode)0b111_001_001);
        return agent;
    }

    private static async Task<SecurityStatistics> SecurityAsync(AgentProcess agent) =>
        (await IpcProbe.SendAsync(agent.IpcSocketPath, new IpcRequest { Status = new StatusRequest() })).Status.Security;

    [RootFact]
    public async Task A_client_running_as_another_uid_is_refused_on_both_sockets_and_logged_with_its_pid_and_uid()
    {
        using var cli = OtherUserCli.Stage();
        await using var agent = await StartSharedAgentAsync(new() { ["DAEMONEYE_SECURITY__SOCKET_GROUP"] = "nogroup" });

        // security.socket_group: sockets 0660 and their directory 0710, of that group.
        foreach (var socket in new[] { agent.SocketPath, agent.IpcSocketPath })
        {
            var (uid, gid, mode) = Posix.GetOwnership(socket);
            Assert.Equal((0u, NoGroup, (UnixFileMode)0b110_110_000), (uid, gid, mode));
        }

        Assert.Equal((0u, NoGroup, (UnixFileMode)0b111_001_000), Posix.GetOwnership(Path.GetDirectoryName(agent.SocketPath)!));

        var ipc = await cli.RunAsync(AsNobody, agent.SocketPath, "status");
        Assert.NotEqual(0, ipc.Code);
        Assert.Contains("refused this IPC connection", ipc.Stderr);
        Assert.Contains($"uid {Nobody} (pid {ipc.Pid}", ipc.Stderr);

        var bus = await cli.RunAsync(AsNobody, agent.SocketPath, "publish", "events.foreign.x", "hello");
        Assert.NotEqual(0, bus.Code);
        Assert.Contains("NotAuthorized", bus.Stderr);
        Assert.Contains($"uid {Nobody} (pid {bus.Pid}", bus.Stderr);

        var security = await SecurityAsync(agent);
        Assert.Equal(1ul, security.PeersRefusedIpc);
        Assert.Equal(1ul, security.PeersRefusedBus);
        Assert.Contains($"Refused a connection to the IPC socket from pid {ipc.Pid} uid {Nobody}", agent.Log);
        Assert.Contains($"Refused a connection to the bus socket from pid {bus.Pid} uid {Nobody}", agent.Log);
    }

    [RootFact]
    public async Task A_member_of_an_allowed_gid_by_supplementary_group_is_accepted_as_a_read_only_subscriber()
    {
        using var cli = OtherUserCli.Stage();
        await using var agent = await StartSharedAgentAsync(new()
        {
            ["DAEMONEYE_SECURITY__SOCKET_GROUP"] = "nogroup",
            ["DAEMONEYE_SECURITY__ALLOWED_GIDS__0"] = NoGroup.ToString(System.Globalization.CultureInfo.InvariantCulture),
        });
        // Primary group 1 (daemon); 65534 only as a supplementary group, which the agent reads from /proc.
        string[] member = [$"--reuid={Nobody}", "--regid=1", $"--groups={NoGroup}"];

        var status = await cli.RunAsync(member, agent.SocketPath, "status", "--json");
        Assert.True(status.Code == 0, status.Stderr);
        Assert.Contains("\"peers_refused_ipc\": 0", status.Stdout);

        // On the bus it asked for the cli role and got subscriber (other_uid_role): publishing is denied.
        var publish = await cli.RunAsync(member, agent.SocketPath, "publish", "events.foreign.x", "hello");
        Assert.Equal(1, publish.Code);
        Assert.Contains("rule subscriber.publish", publish.Stderr);

        var security = await SecurityAsync(agent);
        Assert.Equal(0ul, security.PeersRefusedBus + security.PeersRefusedIpc);
        Assert.Equal(1ul, security.Denied["subscriber.publish"]);
        Assert.Contains("granted Subscriber (security.other_uid_role)", agent.Log);
    }

    [RootFact]
    public async Task An_allowed_uid_with_other_uid_role_client_publishes_events_but_not_control_topics()
    {
        using var cli = OtherUserCli.Stage();
        await using var agent = await StartSharedAgentAsync(new()
        {
            ["DAEMONEYE_SECURITY__SOCKET_GROUP"] = NoGroup.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["DAEMONEYE_SECURITY__ALLOWED_UIDS__0"] = Nobody.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["DAEMONEYE_SECURITY__OTHER_UID_ROLE"] = "client",
        });
        await using var watcher = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = "foreign-watcher" });
        await using var events = await watcher.SubscribeAsync("events.foreign.#");

        var published = await cli.RunAsync(AsNobody, agent.SocketPath, "publish", "events.foreign.x", "from nobody");
        Assert.True(published.Code == 0, published.Stderr);
        using var timeout = new CancellationTokenSource(Patience);
        var message = await events.Reader.ReadAsync(timeout.Token);
        Assert.Equal("from nobody", System.Text.Encoding.UTF8.GetString(message.Payload.Span));

        var control = await cli.RunAsync(AsNobody, agent.SocketPath, "publish", "control.foreign.x", "spoof");
        Assert.Equal(1, control.Code);
        Assert.Contains("rule client.publish_control", control.Stderr);
        Assert.Contains("granted Client (security.other_uid_role)", agent.Log);
    }

    /// <summary>
    /// Issue 23 item 7: over IPC an admitted uid other than the agent's and root is a reader. The real CLI
    /// as uid 65534 lists the collectors, and is refused stopping one or running a task: exit 1, the refusal
    /// naming the operation, its uid and role and the role needed; counted, logged; the collector runs on.
    /// Root, through the same socket, stops it.
    /// </summary>
    [RootFact]
    public async Task An_allowed_uid_reads_over_ipc_but_is_refused_collectors_stop_and_task_run_which_root_may_do()
    {
        const string Id = "tc-ipc-auth";
        using var cli = OtherUserCli.Stage();
        var settings = SupervisedCollectorEndToEndTests.TestCollector(Id);
        settings["DAEMONEYE_SECURITY__SOCKET_GROUP"] = "nogroup";
        settings["DAEMONEYE_SECURITY__ALLOWED_UIDS__0"] = Nobody.ToString(System.Globalization.CultureInfo.InvariantCulture);
        await using var agent = await StartSharedAgentAsync(settings);
        var (watcher, events) = await SupervisedCollectorEndToEndTests.WatchAsync(agent);
        await using var watching = watcher;
        var running = await SupervisedCollectorEndToEndTests.WaitForAsync(events, agent, Id, s => s.State == CollectorState.Running);

        var list = await cli.RunAsync(AsNobody, agent.SocketPath, "collectors", "list", "--json");
        Assert.True(list.Code == 0, list.Stderr);
        Assert.Contains($"\"{Id}\"", list.Stdout);

        var stop = await cli.RunAsync(AsNobody, agent.SocketPath, "collectors", "stop", Id);
        Assert.Equal(1, stop.Code);
        Assert.StartsWith($"NotAuthorized: collectors stop '{Id}' refused by rule ipc.operate: uid {Nobody} (pid {stop.Pid}) has the IPC role reader, which may only read", stop.Stderr);
        Assert.Contains("collectors stop needs the operator role, which only the agent's user (uid 0) and root have", stop.Stderr);

        var task = await cli.RunAsync(AsNobody, agent.SocketPath, "task", "run", "test.echo");
        Assert.Equal(1, task.Code);
        Assert.StartsWith($"NotAuthorized: task run refused by rule ipc.operate: uid {Nobody} (pid {task.Pid})", task.Stderr);

        var still = await IpcProbe.CollectorAsync(agent.IpcSocketPath, Id);
        Assert.Equal((CollectorState.Running, running.Pid), (still.State, still.Pid));
        Assert.Equal(2ul, (await SecurityAsync(agent)).Denied["ipc.operate"]);
        Assert.Contains($"collectors stop refused by rule ipc.operate to pid {stop.Pid} uid {Nobody}: its IPC role is Reader, the operation needs Operator", agent.Log);
        Assert.Contains($"task run refused by rule ipc.operate to pid {task.Pid} uid {Nobody}", agent.Log);

        var (code, _, stderr) = await CliProcess.RunAsync(agent.SocketPath, Patience, "collectors", "stop", Id);
        Assert.True(code == 0, stderr);
        Assert.Equal(CollectorState.Stopped, (await IpcProbe.CollectorAsync(agent.IpcSocketPath, Id)).State);
    }

    /// <summary>
    /// Issue 22: a bus client of another uid that security.other_uid_role makes a client may read a
    /// collector over RPC but not stop it (rule rpc.operate, as ipc.operate on IPC); the collector runs on.
    /// </summary>
    [RootFact]
    public async Task A_client_role_of_another_uid_may_health_check_over_the_bus_but_not_Stop()
    {
        const string Id = "tc-bus-auth";
        using var cli = OtherUserCli.Stage();
        var settings = SupervisedCollectorEndToEndTests.TestCollector(Id);
        settings["DAEMONEYE_SECURITY__SOCKET_GROUP"] = "nogroup";
        settings["DAEMONEYE_SECURITY__ALLOWED_UIDS__0"] = Nobody.ToString(System.Globalization.CultureInfo.InvariantCulture);
        settings["DAEMONEYE_SECURITY__OTHER_UID_ROLE"] = "client";
        await using var agent = await StartSharedAgentAsync(settings);
        var (watcher, events) = await SupervisedCollectorEndToEndTests.WatchAsync(agent);
        await using var watching = watcher;
        var running = await SupervisedCollectorEndToEndTests.WaitForAsync(events, agent, Id, s => s.State == CollectorState.Running);

        var health = await cli.RunAsync(AsNobody, agent.SocketPath, "rpc", Id, "health-check");
        Assert.True(health.Code == 0, health.Stderr);
        Assert.Contains("\"healthy\": true", health.Stdout);

        var stop = await cli.RunAsync(AsNobody, agent.SocketPath, "rpc", Id, "stop", "--payload-json", "{\"graceful\": true}");
        Assert.Equal(1, stop.Code);
        Assert.StartsWith($"NotAuthorized: RPC Stop to 'control.collector.{Id}' refused by rule rpc.operate: uid {Nobody}", stop.Stderr);

        var still = await IpcProbe.CollectorAsync(agent.IpcSocketPath, Id);
        Assert.Equal((CollectorState.Running, running.Pid), (still.State, still.Pid));
        Assert.Equal(1ul, (await SecurityAsync(agent)).Denied["rpc.operate"]);
    }
}
