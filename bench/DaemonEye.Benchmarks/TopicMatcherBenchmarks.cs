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

    // One matcher per benchmark, built on its own: building several side by side would
    // interleave their nodes in memory and measure a cache footprint no agent has.
    [GlobalSetup(Target = nameof(MatchCacheHit))]
    public void SetupHit()
    {
        _topics = Subscriptions.Topics(Batch);
        _cached = Build(cacheCapacity: 4096);
        foreach (var topic in _topics)
        {
            _cached.Match(topic);
        }
    }

    [GlobalSetup(Target = nameof(MatchCacheOff))]
    public void SetupOff()
    {
        _topics = Subscriptions.Topics(Batch);
        _uncached = Build(cacheCapacity: 0);
    }

    [GlobalSetup(Target = nameof(MatchCacheThrash))]
    public void SetupThrash()
    {
        // A working set of distinct heartbeat/control topics four times the cache's size.
        _manyTopics = [.. Enumerable.Range(0, 4 * 4096).Select(i => i % 2 == 0
            ? $"control.health.heartbeat.{Subscriptions.CollectorId(i % Subscriptions.CollectorCount)}-{i}"
            : $"control.collector.{Subscriptions.CollectorId(i % Subscriptions.CollectorCount)}")];
        _thrashed = Build(cacheCapacity: 4096);
    }

    [GlobalSetup(Target = nameof(AddRemoveChurn))]
    public void SetupChurn()
    {
        _churn = [.. Enumerable.Range(0, Batch).Select(i => ($"control.collector.new-{i}.+", 1_000_000 + i))];
        _churned = Build(cacheCapacity: 4096);
    }

    private static TopicMatcher<int> Build(int cacheCapacity)
    {
        var matcher = new TopicMatcher<int>(cacheCapacity);
        foreach (var (pattern, id) in Subscriptions.Create())
        {
            matcher.Add(pattern, id);
        }

        return matcher;
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
