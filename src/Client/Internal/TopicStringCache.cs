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

    public string Get(ReadOnlySpan<byte> utf8)
    {
        var hash = 2166136261u;
        foreach (var b in utf8)
        {
            hash = (hash ^ b) * 16777619u;
        }

        var slot = (int)(hash % Size);
        if (_bytes[slot] is { } cached && utf8.SequenceEqual(cached))
        {
            return _strings[slot]!;
        }

        var s = Encoding.UTF8.GetString(utf8);
        _bytes[slot] = utf8.ToArray();
        _strings[slot] = s;
        return s;
    }
}
