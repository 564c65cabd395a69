using DaemonEye.Hosting;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// The real daemoneye-cli as another user (uid 65534, by setpriv) against an agent whose socket
/// directory it may not search: "permission denied", naming the user the agent runs as and what to
/// do, never "not found ... is daemoneye-agent running?".
/// </summary>
public sealed class CliPermissionEndToEndTests
{
    [RootFact]
    public async Task A_socket_this_user_may_not_reach_is_permission_denied_naming_the_agents_user_on_both_sockets()
    {
        using var cli = OtherUserCli.Stage();
        await using var agent = await AgentProcess.StartAsync();
        // The agent's temp directory may be passed through; its socket directory (0700, the agent's) may not.
        File.SetUnixFileMode(agent.Directory, (UnixFileMode)0b111_001_001);
        var socketDirectory = Path.GetDirectoryName(agent.SocketPath)!;
        var agentUser = $"user '{Posix.UserName(Posix.EffectiveUserId)}' (uid {Posix.EffectiveUserId})";
        var me = Posix.UserName(OtherUserCli.Nobody) is { } name ? $"user '{name}' (uid {OtherUserCli.Nobody})" : $"uid {OtherUserCli.Nobody}";

        var ipc = await cli.RunAsync(OtherUserCli.AsNobody, agent.SocketPath, "status");
        var bus = await cli.RunAsync(OtherUserCli.AsNobody, agent.SocketPath, "publish", "events.denied.x", "hello");

        foreach (var (run, what, path) in new[] { (ipc, "agent IPC socket", agent.IpcSocketPath), (bus, "agent socket", agent.SocketPath) })
        {
            Assert.NotEqual(0, run.Code);
            Assert.Contains($"permission denied connecting to {what} {path}: {socketDirectory} belongs to {agentUser} with mode 0700, and this command runs as {me}.", run.Stderr);
            Assert.Contains($"The agent runs as {agentUser}: run this command as {(Posix.IsRoot ? "root (e.g. with sudo)" : $"{agentUser} or root")}", run.Stderr);
            Assert.Contains("security.socket_group", run.Stderr);
            Assert.DoesNotContain("not found", run.Stderr);
            Assert.DoesNotContain("is daemoneye-agent running", run.Stderr);
        }

        // Nothing reached the agent: the kernel refused at the file system.
        var status = (await IpcProbe.SendAsync(agent.IpcSocketPath, new Protocol.Ipc.V1.IpcRequest { Status = new Protocol.Ipc.V1.StatusRequest() })).Status;
        Assert.Equal(0ul, status.Security.PeersRefusedBus + status.Security.PeersRefusedIpc);
    }

    [RootFact]
    public async Task A_missing_socket_is_still_not_found_for_another_user()
    {
        using var cli = OtherUserCli.Stage();
        var missing = Path.Combine("/tmp", $"de-nosuch-{Guid.NewGuid():N}", "bus.sock");

        var run = await cli.RunAsync(OtherUserCli.AsNobody, missing, "status");

        Assert.NotEqual(0, run.Code);
        Assert.Contains($"agent IPC socket not found at {Path.Combine(Path.GetDirectoryName(missing)!, "ipc.sock")} (its directory does not exist) — is daemoneye-agent running?", run.Stderr);
    }
}
