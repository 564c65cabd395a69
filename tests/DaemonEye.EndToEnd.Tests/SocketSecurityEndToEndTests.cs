using DaemonEye.Hosting;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.V1;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// Start-up checks of the socket directory and the security configuration (the agent exits 2 with
/// a message naming the problem), the default modes, and broker.max_connections.
/// </summary>
public sealed class SocketSecurityEndToEndTests
{
    private static async Task<string> StartFailureAsync(Dictionary<string, string> settings)
    {
        var failure = await Assert.ThrowsAsync<InvalidOperationException>(() => AgentProcess.StartAsync(settings));
        Assert.Contains("daemoneye-agent exited with 2 before it was ready", failure.Message);
        return failure.Message;
    }

    /// <summary>A socket path whose directory exists already with <paramref name="mode"/>.</summary>
    private static (string Root, string Socket) ExistingDirectory(UnixFileMode mode)
    {
        var root = Directory.CreateTempSubdirectory("de-sockdir-").FullName;
        var run = Path.Combine(root, "run");
        Directory.CreateDirectory(run);
        File.SetUnixFileMode(run, mode);
        return (root, Path.Combine(run, "bus.sock"));
    }

    [Fact]
    public async Task By_default_the_socket_directory_is_0700_and_both_sockets_0600_owned_by_the_agents_user()
    {
        await using var agent = await AgentProcess.StartAsync();
        var me = Posix.EffectiveUserId;
        Assert.Equal((me, (UnixFileMode)0b111_000_000), (Posix.GetOwnership(Path.GetDirectoryName(agent.SocketPath)!).Uid, Posix.GetOwnership(Path.GetDirectoryName(agent.SocketPath)!).Mode));
        foreach (var socket in new[] { agent.SocketPath, agent.IpcSocketPath })
        {
            var (uid, _, mode) = Posix.GetOwnership(socket);
            Assert.Equal((me, (UnixFileMode)0b110_000_000), (uid, mode));
        }
    }

    [Theory]
    [InlineData(0b111_111_000, "is writable by group or others (mode 0770)")]
    [InlineData(0b111_101_101, "has mode 0755 and group")]
    public async Task A_socket_directory_open_to_others_stops_the_agent_with_exit_code_2(int mode, string expected)
    {
        var (root, socket) = ExistingDirectory((UnixFileMode)mode);
        try
        {
            var message = await StartFailureAsync(new() { ["DAEMONEYE_BROKER__SOCKET_PATH"] = socket });
            Assert.Contains(expected, message);
            Assert.Contains("chmod 700", message);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [RootFact]
    public async Task A_socket_directory_owned_by_another_user_stops_the_agent_with_exit_code_2()
    {
        var (root, socket) = ExistingDirectory((UnixFileMode)0b111_000_000);
        try
        {
            using (var chown = System.Diagnostics.Process.Start("chown", ["65534", Path.GetDirectoryName(socket)!]))
            {
                await chown.WaitForExitAsync();
                Assert.Equal(0, chown.ExitCode);
            }

            var message = await StartFailureAsync(new() { ["DAEMONEYE_BROKER__SOCKET_PATH"] = socket });
            Assert.Contains("is owned by uid 65534, not by the agent's user", message);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public async Task Bad_security_and_limit_values_are_all_reported_and_stop_the_agent_with_exit_code_2()
    {
        var message = await StartFailureAsync(new()
        {
            ["DAEMONEYE_SECURITY__OTHER_UID_ROLE"] = "admin",
            ["DAEMONEYE_SECURITY__SOCKET_GROUP"] = "no-such-group-de",
            ["DAEMONEYE_SECURITY__REGISTRATION_TOKENS__Bad.Id"] = "tok3n-value",
            ["DAEMONEYE_SECURITY__ALLOWED_UIDS__0"] = "minus-one",
            ["DAEMONEYE_BROKER__MAX_CONNECTIONS"] = "0",
            ["DAEMONEYE_BROKER__MAX_SUBSCRIPTIONS_PER_CONNECTION"] = "0",
            ["DAEMONEYE_BROKER__MAX_SUBSCRIBERS_PER_TOPIC"] = "2000000",
        });

        Assert.Contains("security.other_uid_role is 'admin'; allowed: subscriber, client", message);
        Assert.Contains("security.socket_group is 'no-such-group-de'; no such group", message);
        Assert.Contains("security.registration_tokens has collector id 'Bad.Id'", message);
        Assert.Contains("a token is 16 to 256 printable ASCII characters", message);
        Assert.DoesNotContain("tok3n-value", message); // a secret is never echoed
        Assert.Contains("security.allowed_uids[0] is 'minus-one'; allowed: a numeric user id", message);
        Assert.Contains("broker.max_connections is 0; allowed: 1 to 100000", message);
        Assert.Contains("broker.max_subscriptions_per_connection is 0; allowed: 1 to 1000000", message);
        Assert.Contains("broker.max_subscribers_per_topic is 2000000; allowed: 1 to 1000000", message);
    }

    [Fact]
    public async Task Past_max_connections_a_connection_is_refused_with_LimitExceeded_and_counted()
    {
        await using var agent = await AgentProcess.StartAsync(new Dictionary<string, string> { ["DAEMONEYE_BROKER__MAX_CONNECTIONS"] = "2" });
        await using var first = await RawBus.ConnectAsync(agent.SocketPath, "conn-1", Role.Client);
        var second = await RawBus.ConnectAsync(agent.SocketPath, "conn-2", Role.Client);
        Assert.Equal(Envelope.BodyOneofCase.Welcome, second.HelloReply.BodyCase);

        await using (var third = await RawBus.ConnectAsync(agent.SocketPath, "conn-3", Role.Client))
        {
            var error = third.HelloReply.Error;
            Assert.Equal(ErrorCode.LimitExceeded, error.Code);
            Assert.True(error.Fatal);
            Assert.Contains("broker.max_connections (2)", error.Message);
            Assert.Null(await third.TryReadAsync());
        }

        var status = (await IpcProbe.SendAsync(agent.IpcSocketPath, new IpcRequest { Status = new StatusRequest() })).Status;
        Assert.Equal(1ul, status.Security.Limits["broker.max_connections"]);

        // A closed connection frees its place once the agent has seen it go (it has no event to wait
        // for, so try until the agent has caught up; each refusal in between is counted too).
        await second.DisposeAsync();
        using var patience = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (true)
        {
            patience.Token.ThrowIfCancellationRequested();
            await using var again = await RawBus.ConnectAsync(agent.SocketPath, "conn-4", Role.Client);
            if (again.HelloReply.BodyCase == Envelope.BodyOneofCase.Welcome)
            {
                break;
            }

            Assert.Equal(ErrorCode.LimitExceeded, again.HelloReply.Error.Code);
        }
    }
}
