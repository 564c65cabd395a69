using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace DaemonEye.Topics;

/// <summary>The result cache: 4-way sets of generation-stamped entries.</summary>
public sealed partial class TopicMatcher<T>
{
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

    /// <summary>One cached result; immutable, replaced as a whole.</summary>
    private sealed class CacheEntry(string topic, int hash, long generation, T[] result)
    {
        public readonly string Topic = topic;
        public readonly int Hash = hash;
        public readonly long Generation = generation;
        public readonly T[] Result = result;
    }
}
