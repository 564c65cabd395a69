using System.Text.Json;
using System.Text.RegularExpressions;
using DaemonEye.Client.Tests;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// The collector benchmarks (<c>bench procmond|netmond|fsmond</c>, <c>bench event-rules</c>) as the
/// real program against the real agent and its three real collectors: each answer matches its JSON
/// schema (docs/schemas), every action is matched to its event, and a run that lasts shows its
/// progress on stderr while it runs instead of staying silent until the end. Root: the collectors'
/// kernel interfaces (proc connector, sock_diag, fanotify) need it.
/// </summary>
public sealed class CliBenchEndToEndTests(ShippedRulesFixture fixture) : IClassFixture<ShippedRulesFixture>
{
    private const string WhyRoot = "the real procmond, netmond and fsmond";
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(120);

    private ShippedRulesAgent Shipped => fixture.Agent;

    [RootFact(WhyRoot)]
    public async Task Bench_procmond_shows_progress_while_it_runs_and_its_json_matches_its_schema()
    {
        // 4 s of load: the pipe form prints a progress line every 2 s while the run lasts, and only then.
        using var bench = new CliProcess(Shipped.Agent.SocketPath, "bench: ", "bench", "procmond", "--rate", "50", "--duration", "4", "--warmup", "0", "--grace", "30", "--json");
        await bench.Marker.WaitAsync(Patience);
        var code = await bench.WaitAsync(Patience);

        Assert.True(code == 0, $"exit {code}: {bench.Stderr}");
        Assert.Matches(new Regex(@"^bench: [\d,]+ of 200 execs matched to their event, \d+\.\d s$", RegexOptions.Multiline), bench.Stderr);
        var json = string.Join('\n', bench.Stdout);
        SchemaAssert.Valid("bench-collector", json);
        using var result = JsonDocument.Parse(json);
        Assert.Equal<(string?, int, int, int)>(("procmond", 200, 200, 0), (result.RootElement.GetProperty("collector").GetString(), result.RootElement.GetProperty("actions").GetInt32(), result.RootElement.GetProperty("matched").GetInt32(), result.RootElement.GetProperty("missed").GetInt32()));
    }

    [RootFact(WhyRoot)]
    public async Task Bench_netmond_and_fsmond_match_every_action_and_their_json_matches_the_schema()
    {
        (string Collector, string[] Args)[] runs =
        [
            ("netmond", ["bench", "netmond", "--rate", "20", "--duration", "1", "--warmup", "0", "--grace", "30", "--json"]),
            ("fsmond", ["bench", "fsmond", "--dir", Shipped.Volatile, "--rate", "20", "--duration", "1", "--warmup", "0", "--grace", "30", "--json"]),
        ];
        foreach (var (collector, args) in runs)
        {
            var (code, stdout, stderr) = await CliProcess.RunAsync(Shipped.Agent.SocketPath, Patience, args);

            Assert.True(code == 0, $"bench {collector}: exit {code}: {stderr}");
            var json = string.Join('\n', stdout);
            SchemaAssert.Valid("bench-collector", json);
            using var result = JsonDocument.Parse(json);
            Assert.Equal<(string?, int, int, int)>((collector, 20, 20, 0), (result.RootElement.GetProperty("collector").GetString(), result.RootElement.GetProperty("actions").GetInt32(), result.RootElement.GetProperty("matched").GetInt32(), result.RootElement.GetProperty("missed").GetInt32()));
        }
    }

    [RootFact(WhyRoot)]
    public async Task Bench_event_rules_times_each_alert_and_its_json_matches_its_schema()
    {
        var (code, stdout, stderr) = await CliProcess.RunAsync(Shipped.Agent.SocketPath, Patience,
            "bench", "event-rules", "--dir", Shipped.Volatile, "--count", "3", "--warmup", "1", "--timeout", "30", "--json");

        Assert.True(code == 0, $"exit {code}: {stderr}");
        var json = string.Join('\n', stdout);
        SchemaAssert.Valid("bench-event-rules", json);
        using var result = JsonDocument.Parse(json);
        Assert.Equal(3, result.RootElement.GetProperty("iterations").GetInt32());
        Assert.Equal(0, result.RootElement.GetProperty("timeouts").GetInt32());
        Assert.Equal(3, result.RootElement.GetProperty("alerts").GetInt32() + result.RootElement.GetProperty("unmeasured").GetInt32());
    }
}
