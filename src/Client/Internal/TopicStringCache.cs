using System.Text;

namespace DaemonEye.Client.Internal;

/// <summary>
/// Turns the UTF-8 topic of a delivery into a string, reusing the string of a recently seen
/// topic so that a steady stream on a few topics allocates no strings. Single-threaded (the
/// connection's reader).
/// </summary>
internal sealed class TopicStringCache
{
    private const int Size = 64;
    private readonly byte[]?[] _bytes = new byte[Size][];
    private readonly string?[] _strings = new string[Size];
    private byte[] _lastBytes = [];
    private string _last = string.Empty;

    public string Get(ReadOnlySpan<byte> utf8)
    {
        // A steady stream on one topic: one vectorised compare instead of hashing byte by byte.
        if (utf8.SequenceEqual(_lastBytes))
        {
            return _last;
        }

        var hash = 2166136261u;
        foreach (var b in utf8)
        {
            hash = (hash ^ b) * 16777619u;
        }

        var slot = (int)(hash % Size);
        if (_bytes[slot] is not { } cached || !utf8.SequenceEqual(cached))
        {
            _bytes[slot] = cached = utf8.ToArray();
            _strings[slot] = Encoding.UTF8.GetString(utf8);
        }

        _lastBytes = cached;
        _last = _strings[slot]!;
        return _last;
    }
}
