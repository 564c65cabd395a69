using System.IO.Hashing;

namespace DaemonEye.Gateway.Security;

/// <summary>
/// The correlation ids of a connection's latest publishes (<c>broker.correlation_window</c> of
/// them), to refuse a repeat. Kept as 64-bit XxHash3 values in a ring and a set: no allocation per
/// publish once the window is full, and a fixed bound of memory per connection. Two different ids
/// with the same hash inside one window would be taken for a repeat; for a window of n ids that
/// chance is about n / 2^64 per publish. Used by the connection's reading thread only.
/// </summary>
internal sealed class RecentCorrelationIds(int capacity)
{
    private readonly HashSet<ulong> _seen = [];
    private ulong[]? _ring;
    private int _next;

    public int Capacity => capacity;

    /// <summary>Remembers <paramref name="id"/>; false (and nothing remembered) when it is among the window's ids.</summary>
    public bool TryAdd(ReadOnlySpan<byte> id)
    {
        var hash = XxHash3.HashToUInt64(id);
        if (!_seen.Add(hash))
        {
            return false;
        }

        _ring ??= new ulong[Math.Min(capacity, 256)];
        if (_seen.Count > capacity)
        {
            // Full: the oldest id leaves the window as this one enters it.
            _seen.Remove(_ring[_next]);
        }
        else if (_next == _ring.Length)
        {
            Array.Resize(ref _ring, Math.Min(capacity, _ring.Length * 2));
        }

        _ring[_next] = hash;
        _next = (_next + 1) % capacity;
        return true;
    }
}
