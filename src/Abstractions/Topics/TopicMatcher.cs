using System.Collections.Concurrent;

namespace DaemonEye.Topics;

/// <summary>
/// Matches concrete topics against many subscription patterns. A trie of segments where every
/// node has dedicated children for '+' and '#', so the cost of a match grows with the topic's
/// depth, not with the number of patterns; plus a bounded cache of results that every change
/// invalidates (nats-server's sublist is the model).
/// </summary>
/// <remarks>Thread-safe: mutations take a lock; matches that hit the cache take none.</remarks>
public sealed class TopicMatcher<T> where T : notnull
{
    private readonly Lock _gate = new();
    private readonly Node _root = new();
    private readonly ConcurrentDictionary<string, T[]> _cache = new(StringComparer.Ordinal);
    private readonly IEqualityComparer<T> _comparer;
    private readonly int _cacheCapacity;
    private long _generation;
    private int _count;

    /// <param name="cacheCapacity">Most topics whose results are cached; 0 turns the cache off.</param>
    /// <param name="comparer">Equality of values, for removal and de-duplication.</param>
    public TopicMatcher(int cacheCapacity = 4096, IEqualityComparer<T>? comparer = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(cacheCapacity);
        _cacheCapacity = cacheCapacity;
        _comparer = comparer ?? EqualityComparer<T>.Default;
    }

    /// <summary>Number of (pattern, value) entries.</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary>Increases on every change; a cached result is valid for one generation only.</summary>
    public long Generation => Interlocked.Read(ref _generation);

    /// <summary>Number of topics whose results are cached now.</summary>
    public int CachedTopics => _cache.Count;

    /// <summary>Adds <paramref name="value"/> under <paramref name="pattern"/>; false when it was there already.</summary>
    /// <exception cref="TopicFormatException">The pattern breaks the topic rules.</exception>
    public bool Add(string pattern, T value)
    {
        TopicRules.EnsurePattern(pattern);
        lock (_gate)
        {
            var node = _root;
            foreach (var segment in new SegmentEnumerator(pattern))
            {
                node = node.GetOrAddChild(segment);
            }

            node.Values ??= new HashSet<T>(_comparer);
            if (!node.Values.Add(value))
            {
                return false;
            }

            _count++;
            Invalidate();
            return true;
        }
    }

    /// <summary>Removes <paramref name="value"/> from <paramref name="pattern"/>; false when it was not there.</summary>
    public bool Remove(string pattern, T value)
    {
        if (!TopicRules.IsValidPattern(pattern))
        {
            return false;
        }

        lock (_gate)
        {
            if (!Remove(_root, new SegmentEnumerator(pattern), value))
            {
                return false;
            }

            _count--;
            Invalidate();
            return true;
        }
    }

    /// <summary>
    /// Every value whose pattern matches <paramref name="topic"/>, each once. The returned array
    /// is shared with the cache: do not change it. The topic must be a valid concrete topic
    /// (check it with <see cref="TopicRules.ValidateTopic"/> first).
    /// </summary>
    public T[] Match(string topic)
    {
        if (_cacheCapacity > 0 && _cache.TryGetValue(topic, out var cached))
        {
            return cached;
        }

        T[] result;
        long generation;
        lock (_gate)
        {
            generation = _generation;
            var collector = new Collector(_comparer);
            Collect(_root, topic, 0, ref collector);
            result = collector.ToArray();
        }

        if (_cacheCapacity > 0)
        {
            AddToCache(topic, result, generation);
        }

        return result;
    }

    private void AddToCache(string topic, T[] result, long generation)
    {
        if (_cache.Count >= _cacheCapacity)
        {
            // Bounded: evict about a quarter of the entries, in no particular order (as sublist does).
            var toEvict = Math.Max(1, _cacheCapacity / 4);
            foreach (var key in _cache.Keys)
            {
                if (toEvict-- <= 0)
                {
                    break;
                }

                _cache.TryRemove(key, out _);
            }
        }

        _cache[topic] = result;

        // A change raced with this match: the entry may be stale, so drop it.
        if (Interlocked.Read(ref _generation) != generation)
        {
            _cache.TryRemove(topic, out _);
        }
    }

    private void Invalidate()
    {
        Interlocked.Increment(ref _generation);
        _cache.Clear();
    }

    private static void Collect(Node node, string topic, int start, ref Collector collector)
    {
        // '#' matches zero or more remaining segments, so it matches here whatever is left.
        if (node.Hash?.Values is { } hashValues)
        {
            collector.AddRange(hashValues);
        }

        if (start > topic.Length)
        {
            if (node.Values is { } values)
            {
                collector.AddRange(values);
            }

            return;
        }

        var end = topic.IndexOf(TopicRules.Separator, start);
        if (end < 0)
        {
            end = topic.Length;
        }

        var segment = topic.AsSpan(start, end - start);
        if (node.Children is not null && node.Children.GetAlternateLookup<ReadOnlySpan<char>>().TryGetValue(segment, out var child))
        {
            Collect(child, topic, end + 1, ref collector);
        }

        if (node.Plus is not null)
        {
            Collect(node.Plus, topic, end + 1, ref collector);
        }
    }

    private static bool Remove(Node node, SegmentEnumerator segments, T value)
    {
        if (!segments.MoveNext())
        {
            return node.Values is not null && node.Values.Remove(value);
        }

        var segment = segments.Current;
        var child = node.GetChild(segment);
        if (child is null || !Remove(child, segments, value))
        {
            return false;
        }

        if (child.IsEmpty)
        {
            node.RemoveChild(segment);
        }

        return true;
    }

    private sealed class Node
    {
        public Dictionary<string, Node>? Children;
        public Node? Plus;
        public Node? Hash;
        public HashSet<T>? Values;

        public bool IsEmpty => (Values is null || Values.Count == 0) && (Children is null || Children.Count == 0) && Plus is null && Hash is null;

        public Node GetOrAddChild(ReadOnlySpan<char> segment)
        {
            if (segment is "+")
            {
                return Plus ??= new Node();
            }

            if (segment is "#")
            {
                return Hash ??= new Node();
            }

            Children ??= new Dictionary<string, Node>(StringComparer.Ordinal);
            var lookup = Children.GetAlternateLookup<ReadOnlySpan<char>>();
            if (!lookup.TryGetValue(segment, out var child))
            {
                child = new Node();
                lookup[segment] = child;
            }

            return child;
        }

        public Node? GetChild(ReadOnlySpan<char> segment)
        {
            if (segment is "+")
            {
                return Plus;
            }

            if (segment is "#")
            {
                return Hash;
            }

            return Children is not null && Children.GetAlternateLookup<ReadOnlySpan<char>>().TryGetValue(segment, out var child) ? child : null;
        }

        public void RemoveChild(ReadOnlySpan<char> segment)
        {
            if (segment is "+")
            {
                Plus = null;
            }
            else if (segment is "#")
            {
                Hash = null;
            }
            else
            {
                Children?.GetAlternateLookup<ReadOnlySpan<char>>().Remove(segment);
            }
        }
    }

    /// <summary>Gathers results; de-duplicates only when more than one pattern contributed.</summary>
    private struct Collector(IEqualityComparer<T> comparer)
    {
        private List<T>? _items;
        private HashSet<T>? _seen;
        private int _sources;

        public void AddRange(HashSet<T> values)
        {
            if (values.Count == 0)
            {
                return;
            }

            _sources++;
            _items ??= new List<T>(values.Count);
            if (_sources == 1)
            {
                _items.AddRange(values);
                return;
            }

            _seen ??= new HashSet<T>(_items, comparer);
            foreach (var v in values)
            {
                if (_seen.Add(v))
                {
                    _items.Add(v);
                }
            }
        }

        public readonly T[] ToArray() => _items is null ? [] : [.. _items];
    }
}
