using System.Text;
using DaemonEye.Protocol.Ipc.V1;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>The shipped example collector (src/Collectors/Example) under the real agent, driven by the real CLI.</summary>
public sealed class ExampleCollectorEndToEndTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task The_example_collector_runs_under_the_agent_answers_health_and_publishes_its_ticks()
    {
        await using var agent = await AgentProcess.StartAsync(new Dictionary<string, string>
        {
            ["DAEMONEYE_COLLECTORS__0__ID"] = "example",
            ["DAEMONEYE_COLLECTORS__0__EXECUTABLE"] = Paths.ExampleCollectorDll,
        });
        var (client, events) = await SupervisedCollectorEndToEndTests.WatchAsync(agent);
        await using var _ = client;
        await using var ticks = await client.SubscribeAsync("events.example.tick");
        await SupervisedCollectorEndToEndTests.WaitForAsync(events, agent, "example", s => s.State == CollectorState.Running);

        var (code, stdout, stderr) = await CliProcess.RunAsync(agent.SocketPath, Patience, "collectors", "health", "example");

        Assert.True(code == 0, $"exit {code}: {stderr}");
        Assert.Contains(stdout, l => l.StartsWith("example: healthy", StringComparison.Ordinal));
        var tick = await ticks.Reader.ReadAsync().AsTask().WaitAsync(Patience);
        Assert.StartsWith("tick ", Encoding.UTF8.GetString(tick.Payload.Span), StringComparison.Ordinal);
    }
}
