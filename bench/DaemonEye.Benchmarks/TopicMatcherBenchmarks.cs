using BenchmarkDotNet.Attributes;
using DaemonEye.Topics;

namespace DaemonEye.Benchmarks;

/// <summary>
/// TopicMatcher.Match with 10,000 subscriptions. One operation is one Match call; each
/// invocation matches <see cref="Batch"/> topics so the figures are per match.
/// </summary>
/// <remarks>Not sealed: BenchmarkDotNet derives from benchmark classes.</remarks>
[MemoryDiagnoser]
public class TopicMatcherBenchmarks
{
    private const int Batch = 1024;

    private TopicMatcher<int> _cached = null!;
    private TopicMatcher<int> _uncached = null!;
    private TopicMatcher<int> _thrashed = null!;
    private TopicMatcher<int> _churned = null!;
    private string[] _topics = null!;
    private string[] _manyTopics = null!;
    private (string Pattern, int Id)[] _churn = null!;
    private int _next;

    [GlobalSetup]
    public void Setup()
    {
        var subscriptions = Subscriptions.Create();
        _cached = new TopicMatcher<int>(cacheCapacity: 4096);
        _uncached = new TopicMatcher<int>(cacheCapacity: 0);
        _thrashed = new TopicMatcher<int>(cacheCapacity: 4096);
        _churned = new TopicMatcher<int>(cacheCapacity: 4096);
        foreach (var (pattern, id) in subscriptions)
        {
            _cached.Add(pattern, id);
            _uncached.Add(pattern, id);
            _thrashed.Add(pattern, id);
            _churned.Add(pattern, id);
        }

        // Batch topics, many of them repeated (events topics): the working set fits the cache.
        _topics = Subscriptions.Topics(Batch);
        foreach (var topic in _topics)
        {
            _cached.Match(topic);
        }

        // A working set of distinct heartbeat/control topics four times the cache's size.
        _manyTopics = [.. Enumerable.Range(0, 4 * 4096).Select(i => i % 2 == 0
            ? $"control.health.heartbeat.{Subscriptions.CollectorId(i % Subscriptions.CollectorCount)}-{i}"
            : $"control.collector.{Subscriptions.CollectorId(i % Subscriptions.CollectorCount)}")];

        _churn = [.. Enumerable.Range(0, Batch).Select(i => ($"control.collector.new-{i}.+", 1_000_000 + i))];
    }

    [Benchmark(OperationsPerInvoke = Batch, Description = "Match, cache hit")]
    public int MatchCacheHit()
    {
        var n = 0;
        foreach (var topic in _topics)
        {
            n += _cached.Match(topic).Length;
        }

        return n;
    }

    [Benchmark(OperationsPerInvoke = Batch, Description = "Match, cache off (trie walk)")]
    public int MatchCacheOff()
    {
        var n = 0;
        foreach (var topic in _topics)
        {
            n += _uncached.Match(topic).Length;
        }

        return n;
    }

    [Benchmark(OperationsPerInvoke = Batch, Description = "Match, cache on, working set 4x cache")]
    public int MatchCacheThrash()
    {
        var n = 0;
        var start = _next;
        for (var i = 0; i < Batch; i++)
        {
            n += _thrashed.Match(_manyTopics[(start + i) & (_manyTopics.Length - 1)]).Length;
        }

        _next = start + Batch;
        return n;
    }

    [Benchmark(OperationsPerInvoke = Batch, Description = "Add + Remove (10,000 subscriptions)")]
    public int AddRemoveChurn()
    {
        var n = 0;
        foreach (var (pattern, id) in _churn)
        {
            n += _churned.Add(pattern, id) ? 1 : 0;
            n += _churned.Remove(pattern, id) ? 1 : 0;
        }

        return n;
    }
}
