using BenchmarkDotNet.Attributes;
using DaemonEye.Coordination;

namespace DaemonEye.Benchmarks;

/// <summary>
/// Each shipped rule alone, over the tables of <see cref="ShippedRulesBenchmarks"/> already loaded (a
/// snapshot rule over the snapshot tables, an event rule over the event windows): where the time of
/// "every shipped rule" goes. Run: dotnet run -c Release --project bench/DaemonEye.Benchmarks -- --filter '*ShippedRule*'
/// </summary>
[MemoryDiagnoser]
public class ShippedRuleBenchmarks
{
    private DetectionRule _rule = null!;
    private SnapshotDatabase? _database;
    private EventWindowDatabase? _windows;

    public static IEnumerable<string> RuleIds => ShippedRulesData.Rules().Select(r => r.Id).Order(StringComparer.Ordinal);

    [ParamsSource(nameof(RuleIds))]
    public string Rule { get; set; } = string.Empty;

    [GlobalSetup]
    public void Setup()
    {
        _rule = ShippedRulesData.Rules().Single(r => r.Id == Rule);
        var data = ShippedRulesData.Build();
        if (_rule.IsEvent)
        {
            _windows = ShippedRulesData.BuildWindows(data);
        }
        else
        {
            _database = SnapshotDatabase.Create(data);
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _database?.Dispose();
        _windows?.Dispose();
    }

    [Benchmark(Description = "one shipped rule over the loaded tables (rows counted, 100 kept)")]
    public long OneRule() => ShippedRulesData.Check(
        _rule,
        _database is not null ? _database.Evaluate(_rule.Sql, TimeSpan.FromSeconds(10), TimeProvider.System, 100) : _windows!.Evaluate(_rule.Sql, TimeSpan.FromSeconds(10), 100));
}
