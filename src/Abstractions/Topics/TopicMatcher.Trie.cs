using System.Runtime.CompilerServices;

namespace DaemonEye.Topics;

/// <summary>The trie: walking it for a topic, merging what the matching nodes hold, and its nodes.</summary>
public sealed partial class TopicMatcher<T>
{
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
