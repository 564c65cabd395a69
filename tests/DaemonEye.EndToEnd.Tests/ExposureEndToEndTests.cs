using System.Globalization;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>What the agent listens on, read from the kernel's own tables (/proc), not from its config.</summary>
public sealed class ExposureEndToEndTests
{
    [Fact]
    public async Task Every_TCP_listener_of_the_agent_is_on_loopback_including_the_Prometheus_endpoint()
    {
        // broker.enable_metrics is on by default: the silo endpoint, the Prometheus endpoint, and whatever
        // else is configured on, each of them on loopback. (With metrics off, MetricsEndToEndTests sees
        // the silo endpoint alone: no Orleans client gateway.)
        await using var agent = await AgentProcess.StartAsync(new Dictionary<string, string> { ["DAEMONEYE_BROKER__METRICS_PORT"] = "0" });

        var listening = Listeners.Tcp(agent.Pid);

        Assert.NotEmpty(listening);
        Assert.All(listening, l => Assert.True(l.IsLoopback, $"the agent listens on {l.Address}:{l.Port}, not on loopback"));
        var prometheus = System.Text.RegularExpressions.Regex.Match(agent.Log, @"Prometheus metrics served at http://127\.0\.0\.1:(\d+)/metrics");
        Assert.True(prometheus.Success, agent.Log);
        Assert.Contains(listening, l => l.Port == int.Parse(prometheus.Groups[1].Value, CultureInfo.InvariantCulture));
    }

    /// <summary>orleans.dashboard: true from the environment (no --dashboard switch; DashboardEndToEndTests uses the switch).</summary>
    [Fact]
    public async Task With_the_dashboard_on_its_listener_is_on_loopback_too()
    {
        var port = DashboardEndToEndTests.FreePort();
        await using var agent = await AgentProcess.StartAsync(
            new Dictionary<string, string>
            {
                ["DAEMONEYE_ORLEANS__DASHBOARD"] = "true",
                ["DAEMONEYE_ORLEANS__DASHBOARD_PORT"] = port.ToString(CultureInfo.InvariantCulture),
                ["DAEMONEYE_BROKER__ENABLE_METRICS"] = "false",
            });
        await DashboardEndToEndTests.ListeningAsync(agent, port);
        Assert.Contains("<html", await DashboardEndToEndTests.GetAsync(port, "/"), StringComparison.OrdinalIgnoreCase);

        var listening = Listeners.Tcp(agent.Pid);

        // Metrics off: the silo endpoint and the dashboard, both on loopback.
        Assert.Equal(2, listening.Count);
        Assert.All(listening, l => Assert.True(l.IsLoopback, $"the agent listens on {l.Address}:{l.Port}, not on loopback"));
        Assert.Contains(listening, l => l.Port == port);
    }
}

/// <summary>A process's TCP listeners, from /proc/net/tcp{,6} and its fds.</summary>
internal static class Listeners
{
    public static List<Listener> Tcp(int pid)
    {
        var inodes = SocketInodes(pid);
        return [.. ListeningTcp().Where(l => inodes.Contains(l.Inode))];
    }

    private static HashSet<long> SocketInodes(int pid)
    {
        var inodes = new HashSet<long>();
        foreach (var fd in Directory.EnumerateFileSystemEntries($"/proc/{pid}/fd"))
        {
            var target = new FileInfo(fd).LinkTarget;
            if (target is not null && target.StartsWith("socket:[", StringComparison.Ordinal))
            {
                inodes.Add(long.Parse(target["socket:[".Length..^1], CultureInfo.InvariantCulture));
            }
        }

        return inodes;
    }

    public sealed record Listener(string Address, int Port, long Inode, bool IsLoopback);

    /// <summary>LISTEN entries (state 0A) of /proc/net/tcp and tcp6.</summary>
    private static IEnumerable<Listener> ListeningTcp()
    {
        foreach (var table in new[] { "/proc/net/tcp", "/proc/net/tcp6" })
        {
            foreach (var line in File.ReadLines(table).Skip(1))
            {
                var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (f[3] != "0A")
                {
                    continue;
                }

                var local = f[1].Split(':');
                var port = int.Parse(local[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                var hex = local[0];
                bool loopback;
                string address;
                if (hex.Length == 8)
                {
                    // IPv4, little-endian: 0100007F is 127.0.0.1.
                    var bytes = Convert.FromHexString(hex);
                    Array.Reverse(bytes);
                    address = string.Join('.', bytes);
                    loopback = bytes[0] == 127;
                }
                else
                {
                    address = hex;
                    loopback = hex == "00000000000000000000000001000000" || hex == "0000000000000000FFFF00000100007F";
                }

                yield return new Listener(address, port, long.Parse(f[9], CultureInfo.InvariantCulture), loopback);
            }
        }
    }
}
