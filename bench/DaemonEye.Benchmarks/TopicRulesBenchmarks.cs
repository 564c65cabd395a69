using BenchmarkDotNet.Attributes;
using DaemonEye.Topics;

namespace DaemonEye.Benchmarks;

/// <summary>TopicRules.ValidateTopic on realistic topics; one operation is one validation.</summary>
/// <remarks>Not sealed: BenchmarkDotNet derives from benchmark classes.</remarks>
[MemoryDiagnoser]
public class TopicRulesBenchmarks
{
    private const int Batch = 1024;
    private string[] _topics = null!;

    [GlobalSetup]
    public void Setup() => _topics = Subscriptions.Topics(Batch);

    [Benchmark(OperationsPerInvoke = Batch, Description = "ValidateTopic")]
    public int ValidateTopic()
    {
        var n = 0;
        foreach (var topic in _topics)
        {
            n += TopicRules.ValidateTopic(topic).IsValid ? 1 : 0;
        }

        return n;
    }

    [Benchmark(OperationsPerInvoke = Batch, Description = "Matches (one pair)")]
    public int MatchesOnePair()
    {
        var n = 0;
        foreach (var topic in _topics)
        {
            n += TopicRules.Matches("events.+.lifecycle", topic) ? 1 : 0;
        }

        return n;
    }
}
