using System.Buffers.Binary;
using System.Runtime.CompilerServices;
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
public sealed class TopicMatcher<T> where T : notnull
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

    /// <summary>
    /// A cheap seeded hash for picking the cache set (string.GetHashCode's Marvin costs more than
    /// the rest of a hit). Not collision-resistant against a determined caller: the worst a
    /// collision does is a cache miss, since entries are compared by the whole topic.
    /// </summary>
    private int Hash(string topic)
    {
        const ulong m1 = 0x9E3779B97F4A7C15;
        const ulong m2 = 0xC2B2AE3D27D4EB4F;
        var bytes = MemoryMarshal.AsBytes(topic.AsSpan());
        ulong a = _seed ^ (ulong)bytes.Length, b = m2;
        while (bytes.Length >= 16)
        {
            a = (a ^ BinaryPrimitives.ReadUInt64LittleEndian(bytes)) * m1;
            b = (b ^ BinaryPrimitives.ReadUInt64LittleEndian(bytes[8..])) * m2;
            a ^= a >> 29;
            b ^= b >> 31;
            bytes = bytes[16..];
        }

        if (bytes.Length >= 8)
        {
            a = (a ^ BinaryPrimitives.ReadUInt64LittleEndian(bytes)) * m1;
            bytes = bytes[8..];
        }

        ulong tail = 0;
        for (var i = 0; i < bytes.Length; i++)
        {
            tail |= (ulong)bytes[i] << (8 * i);
        }

        var h = ((a ^ tail) * m2) ^ b;
        return (int)(h ^ (h >> 32));
    }

    private void Store(int set, CacheEntry entry)
    {
        // An empty or out-of-date way if there is one, else one picked by the hash: cheap, and
        // without shared state to contend on.
        var victim = set + (int)((uint)entry.Hash >> 30) % _ways;
        for (var i = set; i < set + _ways; i++)
        {
            var current = Volatile.Read(ref _cache[i]);
            if (current is null || current.Generation != entry.Generation)
            {
                victim = i;
                break;
            }
        }

        Volatile.Write(ref _cache[victim], entry);
    }

    private void Invalidate() => Volatile.Write(ref _generation, _generation + 1);

    /// <summary>Walks the trie for <paramref name="topic"/> and merges what the matching nodes hold. Call under the lock.</summary>
    private T[] Collect(string topic)
    {
        var sources = new Sources();
        Walk(_root, topic, 0, ref sources);
        return sources.Count switch
        {
            0 => [],
            1 => sources[0].Values,
            _ => Merge(ref sources),
        };
    }

    private static void Walk(Node node, string topic, int start, ref Sources sources)
    {
        // '#' matches zero or more remaining segments, so it matches here whatever is left.
        if (node.Hash is { Values.Length: > 0 } hash)
        {
            sources.Add(hash);
        }

        if (start > topic.Length)
        {
            if (node.Values.Length > 0)
            {
                sources.Add(node);
            }

            return;
        }

        var end = topic.IndexOf(TopicRules.Separator, start);
        if (end < 0)
        {
            end = topic.Length;
        }

        if (node.Children is not null && node.ChildLookup.TryGetValue(topic.AsSpan(start, end - start), out var child))
        {
            Walk(child, topic, end + 1, ref sources);
        }

        if (node.Plus is not null)
        {
            Walk(node.Plus, topic, end + 1, ref sources);
        }
    }

    private T[] Merge(ref Sources sources)
    {
        var exclusive = 0;
        var shared = 0;
        for (var i = 0; i < sources.Count; i++)
        {
            var node = sources[i];
            exclusive += node.SharedStart;
            shared += node.Values.Length - node.SharedStart;
        }

        var result = new T[exclusive + shared];
        var n = 0;
        for (var i = 0; i < sources.Count; i++)
        {
            var node = sources[i];
            node.Values.AsSpan(0, node.SharedStart).CopyTo(result.AsSpan(n));
            n += node.SharedStart;
        }

        if (shared == 0)
        {
            return result;
        }

        // Shared values may repeat across sources; exclusive ones cannot, so only these are checked.
        HashSet<T>? seen = shared > 16 ? new HashSet<T>(shared, _comparer) : null;
        for (var i = 0; i < sources.Count; i++)
        {
            var node = sources[i];
            foreach (var value in node.Values.AsSpan(node.SharedStart))
            {
                if (seen is not null ? seen.Add(value) : !Contains(result.AsSpan(exclusive, n - exclusive), value))
                {
                    result[n++] = value;
                }
            }
        }

        return n == result.Length ? result : result[..n];
    }

    private bool Contains(ReadOnlySpan<T> values, T value)
    {
        foreach (var v in values)
        {
            if (_comparer.Equals(v, value))
            {
                return true;
            }
        }

        return false;
    }

    private bool Remove(Node node, SegmentEnumerator segments, T value, out Node holder)
    {
        if (!segments.MoveNext())
        {
            holder = node;
            return node.Delete(value, _comparer);
        }

        var segment = segments.Current;
        var child = node.GetChild(segment);
        if (child is null || !Remove(child, segments, value, out holder))
        {
            holder = null!;
            return false;
        }

        if (child.IsEmpty)
        {
            node.RemoveChild(segment);
        }

        return true;
    }

    /// <summary>One cached result; immutable, replaced as a whole.</summary>
    private sealed class CacheEntry(string topic, int hash, long generation, T[] result)
    {
        public readonly string Topic = topic;
        public readonly int Hash = hash;
        public readonly long Generation = generation;
        public readonly T[] Result = result;
    }

    private sealed class Node
    {
        public Dictionary<string, Node>? Children;

        /// <summary>Span lookup into <see cref="Children"/>, made once rather than per match.</summary>
        public Dictionary<string, Node>.AlternateLookup<ReadOnlySpan<char>> ChildLookup;

        public Node? Plus;
        public Node? Hash;

        /// <summary>Immutable once published (replaced on change): exclusive values, then shared ones.</summary>
        public T[] Values = [];

        /// <summary>Index of the first shared value in <see cref="Values"/>.</summary>
        public int SharedStart;

        public bool IsEmpty => Values.Length == 0 && (Children is null || Children.Count == 0) && Plus is null && Hash is null;

        public int IndexOf(T value, IEqualityComparer<T> comparer)
        {
            var values = Values;
            for (var i = 0; i < values.Length; i++)
            {
                if (comparer.Equals(values[i], value))
                {
                    return i;
                }
            }

            return -1;
        }

        public void Insert(T value, bool shared)
        {
            var old = Values;
            var values = new T[old.Length + 1];
            if (shared)
            {
                old.CopyTo(values, 0);
                values[^1] = value;
            }
            else
            {
                old.AsSpan(0, SharedStart).CopyTo(values);
                values[SharedStart] = value;
                old.AsSpan(SharedStart).CopyTo(values.AsSpan(SharedStart + 1));
                SharedStart++;
            }

            Values = values;
        }

        public bool Delete(T value, IEqualityComparer<T> comparer)
        {
            var index = IndexOf(value, comparer);
            if (index < 0)
            {
                return false;
            }

            var old = Values;
            var values = new T[old.Length - 1];
            old.AsSpan(0, index).CopyTo(values);
            old.AsSpan(index + 1).CopyTo(values.AsSpan(index));
            if (index < SharedStart)
            {
                SharedStart--;
            }

            Values = values;
            return true;
        }

        /// <summary>Moves <paramref name="value"/> to the shared or the exclusive part.</summary>
        public void Reclassify(T value, bool shared, IEqualityComparer<T> comparer)
        {
            var index = IndexOf(value, comparer);
            var isShared = index >= SharedStart;
            if (index < 0 || isShared == shared)
            {
                return;
            }

            var stored = Values[index];
            Delete(stored, comparer);
            Insert(stored, shared);
        }

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

            if (Children is null)
            {
                Children = new Dictionary<string, Node>(StringComparer.Ordinal);
                ChildLookup = Children.GetAlternateLookup<ReadOnlySpan<char>>();
            }

            if (!ChildLookup.TryGetValue(segment, out var child))
            {
                child = new Node();
                ChildLookup[segment] = child;
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

            return Children is not null && ChildLookup.TryGetValue(segment, out var child) ? child : null;
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
                if (Children is not null)
                {
                    ChildLookup.Remove(segment);
                }
            }
        }
    }

    /// <summary>The nodes whose values a topic matches: the first few inline, the rest in a list.</summary>
    private struct Sources
    {
        private InlineNodes _inline;
        private List<Node>? _more;

        public int Count { get; private set; }

        public readonly Node this[int index] => index < InlineSources ? _inline[index] : _more![index - InlineSources];

        public void Add(Node node)
        {
            if (Count < InlineSources)
            {
                _inline[Count] = node;
            }
            else
            {
                (_more ??= []).Add(node);
            }

            Count++;
        }
    }

    [InlineArray(InlineSources)]
    private struct InlineNodes
    {
        private Node _element;
    }
}
