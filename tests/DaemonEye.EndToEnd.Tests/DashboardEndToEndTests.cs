using System.Net;
using System.Net.Sockets;
using System.Text.Json;

namespace DaemonEye.EndToEnd.Tests;

/// <summary><c>daemoneye-agent --dashboard</c>: the Orleans dashboard on 127.0.0.1, with the bus grains' counters.</summary>
public sealed class DashboardEndToEndTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task The_dashboard_serves_on_loopback_and_counts_the_bus_grains_after_traffic()
    {
        var port = FreePort();
        await using var agent = await AgentProcess.StartAsync(
            new Dictionary<string, string> { ["DAEMONEYE_ORLEANS__DASHBOARD_PORT"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture) },
            args: ["--dashboard"]);
        await DashboardEndToEndTests.ListeningAsync(agent, port);

        var page = await GetAsync(port, "/");
        Assert.Contains("<html", page, StringComparison.OrdinalIgnoreCase);

        var (code, _, error) = await CliProcess.RunAsync(agent.SocketPath, Patience, "publish", "events.dashboard.test", "hello", "--count", "20");
        Assert.True(code == 0, error);

        // The dashboard samples the silo once a second: read it until the TopicGrain's Publish calls show.
        using var timeout = new CancellationTokenSource(Patience);
        using var tick = new PeriodicTimer(TimeSpan.FromMilliseconds(250));
        long publishCalls = 0;
        var body = string.Empty;
        while (publishCalls == 0 && !timeout.IsCancellationRequested && await tick.WaitForNextTickAsync(CancellationToken.None))
        {
            body = await GetAsync(port, "/GrainStats/DaemonEye.Grains.TopicGrain");
            using var stats = JsonDocument.Parse(body);
            publishCalls = stats.RootElement.TryGetProperty("DaemonEye.Grains.TopicGrain.Publish", out var history)
                ? history.EnumerateObject().Sum(p => p.Value.GetProperty("count").GetInt64())
                : 0;
        }

        Assert.True(publishCalls > 0, body);
        using var counters = JsonDocument.Parse(await GetAsync(port, "/DashboardCounters"));
        var topicGrains = counters.RootElement.GetProperty("simpleGrainStats").EnumerateArray()
            .Where(g => g.GetProperty("grainType").GetString() == "DaemonEye.Grains.TopicGrain")
            .Sum(g => g.GetProperty("activationCount").GetInt32());
        Assert.True(topicGrains >= 1, "no TopicGrain activation counted");
    }

    [Fact]
    public async Task Without_the_switch_nothing_serves_http()
    {
        var port = FreePort();
        await using var agent = await AgentProcess.StartAsync(
            new Dictionary<string, string> { ["DAEMONEYE_ORLEANS__DASHBOARD_PORT"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture) });

        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var refused = await Assert.ThrowsAsync<SocketException>(async () => await socket.ConnectAsync(IPAddress.Loopback, port));
        Assert.Equal(SocketError.ConnectionRefused, refused.SocketErrorCode);
        Assert.DoesNotContain("Now listening on", agent.Log, StringComparison.Ordinal);
    }

    /// <summary>Kestrel starts after the ready line; the agent logs the dashboard once it has answered its first request.</summary>
    internal static Task ListeningAsync(AgentProcess agent, int port) =>
        agent.WaitForLineAsync(l => l.Contains($"Orleans dashboard on http://127.0.0.1:{port}/", StringComparison.Ordinal), includeEarlier: true).WaitAsync(Patience);

    internal static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    internal static async Task<string> GetAsync(int port, string path)
    {
        using var http = new HttpClient { Timeout = Patience };
        using var response = await http.GetAsync(new Uri($"http://127.0.0.1:{port}{path}"));
        response.EnsureSuccessStatusCode();
        return await response.Content.ReadAsStringAsync();
    }
}
