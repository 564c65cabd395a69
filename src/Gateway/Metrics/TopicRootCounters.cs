using System.Collections.Concurrent;

namespace DaemonEye.Gateway.Metrics;

/// <summary>A count that the hot path bumps with one interlocked add; an observable instrument reads it.</summary>
internal sealed class TallyCounter
{
    private long _value;

    public long Value => Interlocked.Read(ref _value);

    public void Add(long n) => Interlocked.Add(ref _value, n);
}

/// <summary>
/// Message counts by topic root (the first segment, "events" or "control" under TopicRules): the
/// tag of <c>daemoneye.bus.published</c> and <c>.delivered</c>. Callers look a counter up once per
/// topic and keep it, so counting is a plain interlocked add. Roots beyond <see cref="MaxRoots"/>
/// (only possible if the topic rules widen) share the root "other", keeping cardinality bounded.
/// </summary>
internal sealed class TopicRootCounters
{
    public const int MaxRoots = 32;
    public const string Overflow = "other";
    private readonly ConcurrentDictionary<string, TallyCounter> _roots = new(StringComparer.Ordinal);

    public static string RootOf(string topic)
    {
        var dot = topic.IndexOf('.', StringComparison.Ordinal);
        return dot < 0 ? topic : topic[..dot];
    }

    /// <summary>The counter of <paramref name="topic"/>'s root.</summary>
    public TallyCounter For(string topic)
    {
        var root = RootOf(topic);
        if (_roots.TryGetValue(root, out var counter))
        {
            return counter;
        }

        return _roots.Count >= MaxRoots ? _roots.GetOrAdd(Overflow, _ => new TallyCounter()) : _roots.GetOrAdd(root, _ => new TallyCounter());
    }

    public IEnumerable<KeyValuePair<string, TallyCounter>> All => _roots;
}
