using System.Runtime.InteropServices;

namespace DaemonEye.Topics;

/// <summary>
/// Matches concrete topics against many subscription patterns. A trie of segments where every
/// node has dedicated children for '+' and '#', so the cost of a match grows with the topic's
/// depth, not with the number of patterns; plus a bounded cache of results that every change
/// invalidates (nats-server's sublist is the model).
/// </summary>
/// <remarks>
/// <para>Thread-safe. Changes and cache misses take a lock; cache hits take none and do not allocate.</para>
/// <para>
/// The cache is a fixed array of 4-way sets of immutable entries, each stamped with the
/// generation it was computed in. Every change bumps the generation, so a hit is only taken from
/// an entry of the current generation: a match that begins after Add or Remove returned never
/// sees a result from before it. Eviction is replacement within a set; the cache never holds
/// more than the capacity.
/// </para>
/// <para>
/// Each trie node keeps its values in an immutable array, values that are under this pattern
/// only ("exclusive") first, then values that are also under other patterns ("shared"). Only
/// shared values can repeat across the nodes a topic reaches, so only they are de-duplicated;
/// when a single node matches, its array is returned as it is.
/// </para>
/// </remarks>
public sealed partial class TopicMatcher<T> where T : notnull
{
    private const int Ways = 4;
    private const int InlineSources = 16;

    private readonly Lock _gate = new();
    private readonly Node _root = new();
    private readonly Dictionary<T, List<Node>> _nodesByValue;
    private readonly IEqualityComparer<T> _comparer;
    private readonly CacheEntry?[] _cache;
    private readonly int _ways;
    private readonly uint _sets;
    private readonly ulong _seed = (ulong)Random.Shared.NextInt64();
    private long _generation;
    private int _count;

    /// <param name="cacheCapacity">Most topics whose results are cached; 0 turns the cache off.</param>
    /// <param name="comparer">Equality of values, for removal and de-duplication.</param>
    public TopicMatcher(int cacheCapacity = 4096, IEqualityComparer<T>? comparer = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(cacheCapacity);
        _comparer = comparer ?? EqualityComparer<T>.Default;
        _nodesByValue = new Dictionary<T, List<Node>>(_comparer);
        _ways = Math.Min(Ways, cacheCapacity);
        _sets = _ways == 0 ? 0 : (uint)(cacheCapacity / _ways);
        _cache = new CacheEntry?[_sets * _ways];
    }

    /// <summary>Number of (pattern, value) entries.</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary>Increases on every change; a cached result is valid for one generation only.</summary>
    public long Generation => Volatile.Read(ref _generation);

    /// <summary>Number of topics whose results are cached for the current generation.</summary>
    public int CachedTopics
    {
        get
        {
            var generation = Generation;
            var n = 0;
            foreach (var entry in _cache)
            {
                if (entry is not null && entry.Generation == generation)
                {
                    n++;
                }
            }

            return n;
        }
    }

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

            if (node.IndexOf(value, _comparer) >= 0)
            {
                return false;
            }

            ref var nodes = ref CollectionsMarshal.GetValueRefOrAddDefault(_nodesByValue, value, out _);
            nodes ??= new List<Node>(1);
            nodes.Add(node);
            if (nodes.Count == 2)
            {
                // The value was exclusive to its other node; now it can repeat across nodes.
                nodes[0].Reclassify(value, shared: true, _comparer);
            }

            node.Insert(value, shared: nodes.Count > 1);
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
            if (!Remove(_root, new SegmentEnumerator(pattern), value, out var node))
            {
                return false;
            }

            var nodes = _nodesByValue[value];
            nodes.Remove(node);
            if (nodes.Count == 0)
            {
                _nodesByValue.Remove(value);
            }
            else if (nodes.Count == 1)
            {
                nodes[0].Reclassify(value, shared: false, _comparer);
            }

            _count--;
            Invalidate();
            return true;
        }
    }

    /// <summary>
    /// Every value whose pattern matches <paramref name="topic"/>, each once. The returned array
    /// is shared with the cache and the trie: do not change it. The topic must be a valid concrete
    /// topic (check it with <see cref="TopicRules.ValidateTopic"/> first).
    /// </summary>
    public T[] Match(string topic)
    {
        if (_sets == 0)
        {
            lock (_gate)
            {
                return Collect(topic);
            }
        }

        var hash = Hash(topic);
        var set = (int)((ulong)(uint)hash * _sets >> 32) * _ways;
        var generation = Volatile.Read(ref _generation);
        for (var i = set; i < set + _ways; i++)
        {
            var entry = Volatile.Read(ref _cache[i]);
            if (entry is not null && entry.Hash == hash && entry.Generation == generation && string.Equals(entry.Topic, topic))
            {
                return entry.Result;
            }
        }

        T[] result;
        lock (_gate)
        {
            // Read under the lock: the result and its generation belong together.
            generation = _generation;
            result = Collect(topic);
        }

        Store(set, new CacheEntry(topic, hash, generation, result));
        return result;
    }
}
