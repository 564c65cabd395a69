using System.Globalization;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>What the agent listens on, read from the kernel's own tables (/proc), not from its config.</summary>
public sealed class ExposureEndToEndTests
{
    [Fact]
    public async Task Every_TCP_listener_of_the_agent_is_on_loopback_including_the_Prometheus_endpoint()
    {
        // broker.enable_metrics is on by default: the Prometheus endpoint, and whatever else is configured
        // on, each of them on loopback. The silo has no TCP listener (ClosedSilo); with metrics off,
        // MetricsEndToEndTests sees none at all.
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

        // Metrics off: the dashboard alone, on loopback (the silo has no TCP listener).
        Assert.Single(listening);
        Assert.All(listening, l => Assert.True(l.IsLoopback, $"the agent listens on {l.Address}:{l.Port}, not on loopback"));
        Assert.Contains(listening, l => l.Port == port);
    }
}

/// <summary>
/// A process's listening sockets, read from the kernel: the socket inodes among its descriptors
/// (/proc/&lt;pid&gt;/fd), matched against the LISTEN entries of /proc/&lt;pid&gt;/net/tcp, tcp6 and unix.
/// </summary>
internal static class Listeners
{
    public static List<Listener> Tcp(int pid)
    {
        var inodes = SocketInodes(pid);
        return [.. ListeningTcp(pid).Where(l => inodes.Contains(l.Inode))];
    }

    /// <summary>Listening Unix sockets of <paramref name="pid"/>: their paths ("@name" for an abstract one, "" for an unnamed one).</summary>
    public static List<UnixListener> Unix(int pid)
    {
        var inodes = SocketInodes(pid);
        return [.. ListeningUnix(pid).Where(l => inodes.Contains(l.Inode))];
    }

    /// <summary>Every listening socket of <paramref name="pid"/> as the socket probe names it: <c>unix:PATH</c>, <c>tcp:ADDRESS:PORT</c>.</summary>
    public static List<string> ProbeEndpoints(int pid) =>
    [
        .. Unix(pid).Select(u => "unix:" + u.Path),
        .. Tcp(pid).Select(t => "tcp:" + new System.Net.IPEndPoint(Connectable(t.Ip), t.Port)),
    ];

    /// <summary>A wildcard listener is reached through loopback.</summary>
    private static System.Net.IPAddress Connectable(System.Net.IPAddress ip) =>
        ip.Equals(System.Net.IPAddress.Any) ? System.Net.IPAddress.Loopback
        : ip.Equals(System.Net.IPAddress.IPv6Any) ? System.Net.IPAddress.IPv6Loopback
        : ip.IsIPv4MappedToIPv6 ? ip.MapToIPv4() : ip;

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

    public sealed record Listener(string Address, int Port, long Inode, bool IsLoopback, System.Net.IPAddress Ip);

    public sealed record UnixListener(string Path, long Inode);

    /// <summary>LISTEN entries (state 0A) of the process's network namespace's tcp and tcp6 tables.</summary>
    private static IEnumerable<Listener> ListeningTcp(int pid)
    {
        foreach (var table in new[] { $"/proc/{pid}/net/tcp", $"/proc/{pid}/net/tcp6" })
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
                // The address is printed as 32-bit words in host (little-endian) order: 0100007F is 127.0.0.1.
                var bytes = Convert.FromHexString(local[0]);
                for (var word = 0; word < bytes.Length; word += 4)
                {
                    Array.Reverse(bytes, word, 4);
                }

                var ip = new System.Net.IPAddress(bytes);
                var loopback = System.Net.IPAddress.IsLoopback(ip) || (ip.IsIPv4MappedToIPv6 && System.Net.IPAddress.IsLoopback(ip.MapToIPv4()));
                yield return new Listener(ip.IsIPv4MappedToIPv6 ? ip.MapToIPv4().ToString() : ip.ToString(), port, long.Parse(f[9], CultureInfo.InvariantCulture), loopback, ip);
            }
        }
    }

    /// <summary>Entries of /proc/&lt;pid&gt;/net/unix with __SO_ACCEPTCON (0x10000) in their flags: listening sockets.</summary>
    private static IEnumerable<UnixListener> ListeningUnix(int pid)
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/net/unix").Skip(1))
        {
            // Num RefCount Protocol Flags Type St Inode [Path]
            var f = line.Split(' ', 8, StringSplitOptions.RemoveEmptyEntries);
            var flags = int.Parse(f[3], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            if ((flags & 0x10000) == 0)
            {
                continue;
            }

            yield return new UnixListener(f.Length > 7 ? f[7].Trim() : string.Empty, long.Parse(f[6], CultureInfo.InvariantCulture));
        }
    }
}
