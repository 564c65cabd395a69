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
}
