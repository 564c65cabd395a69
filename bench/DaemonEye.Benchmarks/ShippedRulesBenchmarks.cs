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
/// events (append, retention, the rules of the changed table). The resident tables the agent keeps
/// between evaluations (<see cref="SnapshotDatabase.CreateResident"/>): cold (the first update, a full
/// load), steady (1 % of processes and connections changed and 1,000 new file events since the last
/// evaluation) and with nothing changed, each with every shipped rule; steady also with file events
/// from a collector that gives no run (each held event compared, not trusted by its name). Not a CI gate.
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
    private SnapshotDatabase _resident = null!;
    private EvaluationData[] _changed = null!;
    private EvaluationData[] _unchanged = null!;
    private SnapshotDatabase _residentNoRun = null!;
    private EvaluationData[] _changedNoRun = null!;
    private int _turn;
    private int _turnNoRun;

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
        // Each resident update alternates between two fresh copies: the data and the data one evaluation
        // later (1 % changed each way), or two equal copies (nothing changed); never the objects the
        // tables hold, so every row is compared in full, as with a new collector answer.
        _changed = [ShippedRulesData.Copy(_data), ShippedRulesData.Changed(_data)];
        _unchanged = [ShippedRulesData.Copy(_data), ShippedRulesData.Copy(_data)];
        _resident = SnapshotDatabase.CreateResident();
        _resident.Update(ShippedRulesData.Copy(_data));
        var delta = _resident.Update(_changed[1]);
        if (delta.FullLoad || delta.Inserted != 1000 + 66 || delta.Deleted != 1000 + 66 || delta.Updated != 2 * 34)
        {
            throw new InvalidOperationException($"unexpected delta: {delta.Summary}");
        }

        _resident.Update(_changed[0]);
        _changedNoRun = [ShippedRulesData.WithoutRun(ShippedRulesData.Copy(_data)), ShippedRulesData.WithoutRun(ShippedRulesData.Changed(_data))];
        _residentNoRun = SnapshotDatabase.CreateResident();
        _residentNoRun.Update(ShippedRulesData.WithoutRun(ShippedRulesData.Copy(_data)));
        _residentNoRun.Update(_changedNoRun[1]);
        _residentNoRun.Update(_changedNoRun[0]);
        _arrivals = [.. _data.Processes[0].Processes.Take(100).Select(p => new ProcessLifecycle { Kind = ProcessLifecycleKind.Executed, Process = p, ObservedUnixMs = ShippedRulesData.EventBaseUnixMs + 1000, CollectorId = "procmond" })];
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _resident.Dispose();
        _residentNoRun.Dispose();
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

    [Benchmark(Description = "resident tables, cold: the first update (full load, identities kept) and every shipped rule")]
    public long ResidentColdEvaluation()
    {
        using var database = SnapshotDatabase.CreateResident();
        database.Update(_data);
        return RunRules(database);
    }

    [Benchmark(Description = "resident tables, steady: apply 1 % of processes and connections changed + 1,000 new file events, and every shipped rule")]
    public long ResidentChangedEvaluation() => ResidentEvaluation(_changed);

    [Benchmark(Description = "resident tables, steady, file events without a run (each compared): apply 1 % changed + 1,000 new file events, and every shipped rule")]
    public long ResidentChangedNoRunEvaluation()
    {
        _residentNoRun.Update(_changedNoRun[_turnNoRun++ % 2]);
        return RunRules(_residentNoRun);
    }

    [Benchmark(Description = "resident tables, nothing changed: compare every row, apply nothing, and every shipped rule")]
    public long ResidentUnchangedEvaluation() => ResidentEvaluation(_unchanged);

    [Benchmark(Description = "resident tables, steady: apply 1 % changed + 1,000 new file events only (no rules)")]
    public int ResidentChangedUpdate()
    {
        var next = _changed[_turn++ % 2];
        return _resident.Update(next).Inserted;
    }

    [Benchmark(Description = "load the tables only")]
    public int Load()
    {
        using var database = SnapshotDatabase.Create(_data);
        return database.Processes;
    }

    [Benchmark(Description = "every shipped rule over the loaded tables")]
    public long Rules() => RunRules(_database);

    private long ResidentEvaluation(EvaluationData[] turns)
    {
        _resident.Update(turns[_turn++ % 2]);
        return RunRules(_resident);
    }

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
