using System.Globalization;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// Issue 22 item 7: no other uid reaches Orleans, the bus or IPC through any socket of the agent.
/// The sockets tried are not a list in the test: they are every listening socket the kernel says
/// the agent's process holds (<see cref="Listeners"/>), tried by the socket probe (tests/SocketProbe)
/// run as uid 65534 with each protocol: an Orleans connection, a bus Hello, an IPC status call.
/// </summary>
public sealed class SiloClosedEndToEndTests
{
    /// <summary>setpriv's credentials for the agent's own user (the tests run as root): the probe's positive control.</summary>
    private static readonly string[] AsAgentUser = ["--reuid=0", "--regid=0", "--clear-groups"];

    [RootFact]
    public async Task As_nobody_no_listening_socket_of_the_agent_accepts_an_Orleans_connection_a_bus_Hello_or_an_IPC_call()
    {
        using var probe = OtherUserCli.Stage(Paths.SocketProbeDll);
        var dashboardPort = DashboardEndToEndTests.FreePort();
        // Everything that can listen is on: Prometheus (on by default; a free port), the dashboard, and
        // the sockets shared with nobody's group (security.socket_group) so that the file system lets the
        // probe through to the agent's own checks (peer credentials) instead of stopping it at the directory.
        await using var agent = await AgentProcess.StartAsync(new Dictionary<string, string>
        {
            ["DAEMONEYE_SECURITY__SOCKET_GROUP"] = "nogroup",
            ["DAEMONEYE_BROKER__ENABLE_METRICS"] = "true",
            ["DAEMONEYE_BROKER__METRICS_PORT"] = "0",
            ["DAEMONEYE_ORLEANS__DASHBOARD"] = "true",
            ["DAEMONEYE_ORLEANS__DASHBOARD_PORT"] = dashboardPort.ToString(CultureInfo.InvariantCulture),
        });
        // The test's own directory above the runtime directory lets others through (0711), as /run does.
        File.SetUnixFileMode(agent.Directory, (UnixFileMode)0b111_001_001);
        await DashboardEndToEndTests.ListeningAsync(agent, dashboardPort);

        var endpoints = Listeners.ProbeEndpoints(agent.Pid);
        Assert.Contains($"unix:{agent.SocketPath}", endpoints);
        Assert.Contains($"unix:{agent.IpcSocketPath}", endpoints);
        Assert.Contains($"tcp:127.0.0.1:{dashboardPort}", endpoints);
        Assert.Contains(endpoints, e => e.StartsWith("tcp:", StringComparison.Ordinal) && e != $"tcp:127.0.0.1:{dashboardPort}");
        Assert.DoesNotContain("unix:", endpoints);

        var asNobody = await RunProbeAsync(probe, OtherUserCli.AsNobody, agent, endpoints);

        var accepted = asNobody.Where(r => r.Accepted).ToList();
        Assert.True(accepted.Count == 0, "accepted from uid 65534:\n" + string.Join('\n', accepted));
        // The refusals are the agent's own (peer credentials), not the file system's: the probe reached both sockets.
        Assert.Contains(asNobody, r => r.Endpoint == $"unix:{agent.SocketPath}" && r.Protocol == "bus" && r.Detail.Contains("NotAuthorized", StringComparison.Ordinal));
        Assert.Contains(asNobody, r => r.Endpoint == $"unix:{agent.IpcSocketPath}" && r.Protocol == "ipc" && r.Detail.Contains("NotAuthorized", StringComparison.Ordinal));

        // The positive control: the same probe as the agent's own user is welcomed on the bus and answered
        // over IPC, so "refused" above is the agent refusing, not the probe failing. Orleans accepts it
        // nowhere either: the silo has no socket for anyone.
        var asAgent = await RunProbeAsync(probe, AsAgentUser, agent, endpoints);
        Assert.Contains(asAgent, r => r.Endpoint == $"unix:{agent.SocketPath}" && r.Protocol == "bus" && r.Accepted);
        Assert.Contains(asAgent, r => r.Endpoint == $"unix:{agent.IpcSocketPath}" && r.Protocol == "ipc" && r.Accepted);
        Assert.DoesNotContain(asAgent, r => r.Protocol == "orleans" && r.Accepted);
    }

    private static async Task<List<ProbeResult>> RunProbeAsync(OtherUserCli probe, string[] credentials, AgentProcess agent, List<string> endpoints)
    {
        var (code, _, stdout, stderr) = await probe.RunAsync(credentials, agent.SocketPath, [.. endpoints]);
        Assert.True(code == 0, $"socket-probe exited {code}: {stderr}");
        var results = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(ProbeResult.Parse).ToList();
        // One verdict per socket and protocol: nothing was skipped.
        Assert.Equal(endpoints.Count * 3, results.Count);
        Assert.Equal(endpoints.Order(StringComparer.Ordinal), results.Select(r => r.Endpoint).Distinct().Order(StringComparer.Ordinal));
        return results;
    }

    private sealed record ProbeResult(string Endpoint, string Protocol, bool Accepted, string Detail)
    {
        public static ProbeResult Parse(string line)
        {
            var f = line.Split(' ', 4);
            return new ProbeResult(f[0], f[1], f[2] == "accepted", f.Length > 3 ? f[3] : string.Empty);
        }

        public override string ToString() => $"{Endpoint} {Protocol}: {Detail}";
    }
}
