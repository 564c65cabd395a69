using BenchmarkDotNet.Attributes;
using DaemonEye.Coordination;
using DaemonEye.Protocol.Process.V1;

namespace DaemonEye.Benchmarks;

/// <summary>
/// One evaluation of every shipped snapshot rule (config/rules) over 10,000 processes, 10,000
/// connections (plus 200 listeners) and 100,000 file events, the default watch lists; a few rows match
/// each rule (issue 18's goal: the whole evaluation within 50 ms). Measured apart: loading the tables,
/// and running the rules over them. The shipped event rules (kind: event) over windows holding the
/// same data as events (10,000 exec events, 10,000 connection events, 100,000 file events): one run of
/// every event rule (what a round costs when every table changed), and one round of 100 arriving
/// events (append, retention, the rules of the changed table). Not a CI gate.
/// Run: dotnet run -c Release --project bench/DaemonEye.Benchmarks -- --filter '*ShippedRules*'
/// </summary>
[MemoryDiagnoser]
public class ShippedRulesBenchmarks
{
    private List<DetectionRule> _rules = null!;
    private List<DetectionRule> _eventRules = null!;
    private EvaluationData _data = null!;
    private SnapshotDatabase _database = null!;
    private EventWindowDatabase _windows = null!;
    private ProcessLifecycle[] _arrivals = null!;

    [GlobalSetup]
    public void Setup()
    {
        var rules = ShippedRulesData.Rules();
        _rules = [.. rules.Where(r => !r.IsEvent)];
        _eventRules = [.. rules.Where(r => r.IsEvent)];
        if (_eventRules.Count == 0)
        {
            throw new InvalidOperationException("no shipped event rule");
        }

        _data = ShippedRulesData.Build();
        _database = SnapshotDatabase.Create(_data);
        _windows = ShippedRulesData.BuildWindows(_data);
        _arrivals = [.. _data.Processes[0].Processes.Take(100).Select(p => new ProcessLifecycle { Kind = ProcessLifecycleKind.Executed, Process = p, ObservedUnixMs = ShippedRulesData.EventBaseUnixMs + 1000, CollectorId = "procmond" })];
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _database.Dispose();
        _windows.Dispose();
    }

    [Benchmark(Description = "every shipped event rule over windows of 10k exec, 10k connection and 100k file events")]
    public long EventRules()
    {
        long rows = 0;
        foreach (var rule in _eventRules)
        {
            rows += Check(rule, _windows.Evaluate(rule.Sql, TimeSpan.FromSeconds(10), 100));
        }

        return rows;
    }

    [Benchmark(Description = "one event round: 100 exec events appended, retention, the rules reading process_events")]
    public long EventRound()
    {
        _windows.BeginRound();
        foreach (var e in _arrivals)
        {
            _windows.Append(e);
        }

        _windows.EndRound();
        long rows = 0;
        foreach (var rule in _eventRules.Where(r => RuleRequirements.OfEvent(r.Sql).Tables.Contains(EventWindowDatabase.ProcessEvents)))
        {
            rows += Check(rule, _windows.Evaluate(rule.Sql, TimeSpan.FromSeconds(10), 100));
        }

        return rows;
    }

    private static long Check(DetectionRule rule, RuleEvaluation result) => ShippedRulesData.Check(rule, result);

    [Benchmark(Description = "one evaluation: load 10k processes, 10k connections, 100k file events and run every shipped rule")]
    public long Evaluation()
    {
        using var database = SnapshotDatabase.Create(_data);
        return RunRules(database);
    }

    [Benchmark(Description = "load the tables only")]
    public int Load()
    {
        using var database = SnapshotDatabase.Create(_data);
        return database.Processes;
    }

    [Benchmark(Description = "every shipped rule over the loaded tables")]
    public long Rules() => RunRules(_database);

    private long RunRules(SnapshotDatabase database)
    {
        long rows = 0;
        foreach (var rule in _rules)
        {
            rows += Check(rule, database.Evaluate(rule.Sql, TimeSpan.FromSeconds(10), TimeProvider.System, 100));
        }

        return rows;
    }
}
