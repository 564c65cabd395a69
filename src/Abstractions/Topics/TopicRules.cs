using System.Buffers;

namespace DaemonEye.Topics;

/// <summary>
/// The one definition of what a topic and a topic pattern may look like. Used by the gateway,
/// the SDK and the CLI alike.
/// </summary>
/// <remarks>
/// A topic is 1 to <see cref="MaxSegments"/> segments separated by '.', at most
/// <see cref="MaxBytes"/> bytes in all; each segment is 1 to <see cref="MaxSegmentLength"/>
/// characters from [a-z0-9_-]; the first segment is "events" or "control". A pattern follows the
/// same rules except that a segment may be exactly "+" (one segment) or, as the last segment
/// only, "#" (zero or more trailing segments); a pattern may begin with a wildcard.
/// </remarks>
public static class TopicRules
{
    public const int MaxSegments = 8;
    public const int MaxBytes = 255;
    public const int MaxSegmentLength = 64;
    public const char Separator = '.';
    public const string SingleLevelWildcard = "+";
    public const string MultiLevelWildcard = "#";

    private static readonly SearchValues<char> SegmentChars = SearchValues.Create("abcdefghijklmnopqrstuvwxyz0123456789_-");

    /// <summary>Checks a concrete topic (what is published).</summary>
    public static TopicValidation ValidateTopic(string? topic) => Validate(topic, isPattern: false);

    /// <summary>Checks a subscription pattern (what is subscribed).</summary>
    public static TopicValidation ValidatePattern(string? pattern) => Validate(pattern, isPattern: true);

    public static bool IsValidTopic(string? topic) => ValidateTopic(topic).IsValid;

    public static bool IsValidPattern(string? pattern) => ValidatePattern(pattern).IsValid;

    /// <summary>Throws <see cref="TopicFormatException"/> when <paramref name="topic"/> is not a valid topic.</summary>
    public static string EnsureTopic(string? topic)
    {
        var v = ValidateTopic(topic);
        return v.IsValid ? topic! : throw new TopicFormatException(v.Error!);
    }

    /// <summary>Throws <see cref="TopicFormatException"/> when <paramref name="pattern"/> is not a valid pattern.</summary>
    public static string EnsurePattern(string? pattern)
    {
        var v = ValidatePattern(pattern);
        return v.IsValid ? pattern! : throw new TopicFormatException(v.Error!);
    }

    /// <summary>True when the pattern contains a wildcard segment.</summary>
    public static bool HasWildcard(string pattern)
    {
        foreach (var segment in new SegmentEnumerator(pattern))
        {
            if (segment.Length == 1 && (segment[0] == '+' || segment[0] == '#'))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Matches one valid topic against one valid pattern, segment by segment, without allocating.
    /// For many patterns at once use <see cref="TopicMatcher{T}"/>.
    /// </summary>
    public static bool Matches(string pattern, string topic)
    {
        var p = new SegmentEnumerator(pattern);
        var t = new SegmentEnumerator(topic);
        while (p.MoveNext())
        {
            var ps = p.Current;
            if (ps.Length == 1 && ps[0] == '#')
            {
                return true;
            }

            if (!t.MoveNext())
            {
                return false;
            }

            if (ps.Length == 1 && ps[0] == '+')
            {
                continue;
            }

            if (!ps.SequenceEqual(t.Current))
            {
                return false;
            }
        }

        return !t.MoveNext();
    }

    /// <summary>
    /// True when every topic <paramref name="inner"/> matches is also matched by <paramref name="outer"/>
    /// (both valid patterns; a topic is a pattern without wildcards). Used by access rules:
    /// <c>Covers("events.#", "events.process.+")</c> is true, <c>Covers("events.process.#", "events.+")</c> false.
    /// </summary>
    public static bool Covers(string outer, string inner)
    {
        var o = new SegmentEnumerator(outer);
        var i = new SegmentEnumerator(inner);
        while (o.MoveNext())
        {
            var os = o.Current;
            if (os.Length == 1 && os[0] == '#')
            {
                return true;
            }

            if (!i.MoveNext())
            {
                return false;
            }

            var inn = i.Current;
            if (inn.Length == 1 && inn[0] == '#')
            {
                // The inner pattern reaches any depth here; only '#' in the outer one covers that.
                return false;
            }

            if (os.Length == 1 && os[0] == '+')
            {
                continue;
            }

            if ((inn.Length == 1 && inn[0] == '+') || !os.SequenceEqual(inn))
            {
                return false;
            }
        }

        return !i.MoveNext();
    }

    private static TopicValidation Validate(string? value, bool isPattern)
    {
        var what = isPattern ? "pattern" : "topic";
        if (string.IsNullOrEmpty(value))
        {
            return TopicValidation.Fail($"the {what} is empty; expected segments separated by '.', e.g. 'events.process.lifecycle'");
        }

        // The alphabet is ASCII, so for a valid value chars == bytes; UTF-8 is counted so that a
        // long non-ASCII value is reported by its real size. A UTF-16 char is 1 to 3 UTF-8 bytes,
        // so counting is only needed when the length alone does not settle it.
        var byteCount = value.Length <= MaxBytes / 3 ? value.Length : System.Text.Encoding.UTF8.GetByteCount(value);
        if (byteCount > MaxBytes)
        {
            var offset = OffsetOfByte(value, MaxBytes);
            var segment = value.AsSpan(0, offset).Count(Separator) + 1;
            return TopicValidation.Fail($"the {what} is {byteCount} bytes long; at most {MaxBytes} bytes are allowed (the limit is passed in segment {segment}, at character {offset + 1})", segment, offset);
        }

        var segmentIndex = 0;
        var start = 0;
        while (true)
        {
            var end = value.IndexOf(Separator, start);
            var last = end < 0;
            if (last)
            {
                end = value.Length;
            }

            segmentIndex++;
            if (segmentIndex > MaxSegments)
            {
                var total = value.AsSpan().Count(Separator) + 1;
                return TopicValidation.Fail($"the {what} has {total} segments; at most {MaxSegments} are allowed (segment {segmentIndex} begins at character {start + 1})", segmentIndex, start);
            }

            var error = ValidateSegment(value.AsSpan(start, end - start), segmentIndex, start, isPattern, last, what);
            if (error is not null)
            {
                return error.Value;
            }

            if (last)
            {
                break;
            }

            start = end + 1;
        }

        return TopicValidation.Valid;
    }

    /// <summary>The 0-based index of the char holding byte number <paramref name="byteIndex"/> of the UTF-8 encoding.</summary>
    private static int OffsetOfByte(string value, int byteIndex)
    {
        var bytes = 0;
        for (var i = 0; i < value.Length; i++)
        {
            var c = value[i];
            bytes += c < 0x80 ? 1 : c < 0x800 || char.IsSurrogate(c) ? 2 : 3;
            if (bytes > byteIndex)
            {
                return i;
            }
        }

        return value.Length - 1;
    }

    private static TopicValidation? ValidateSegment(ReadOnlySpan<char> segment, int index, int offset, bool isPattern, bool last, string what)
    {
        var at = offset + 1;
        if (segment.IsEmpty)
        {
            return TopicValidation.Fail($"segment {index} of the {what} is empty (at character {at}); segments are separated by a single '.' and may not be empty", index, offset);
        }

        if (segment.Length > MaxSegmentLength)
        {
            return TopicValidation.Fail($"segment {index} of the {what} (at character {at}) is {segment.Length} characters long; at most {MaxSegmentLength} are allowed", index, offset);
        }

        if (segment is "+" || segment is "#")
        {
            if (!isPattern)
            {
                return TopicValidation.Fail($"segment {index} of the topic is the wildcard '{segment}' (at character {at}), which is allowed in subscription patterns only; a published topic must be concrete", index, offset);
            }

            if (segment is "#" && !last)
            {
                return TopicValidation.Fail($"segment {index} of the pattern is '#' (at character {at}), which may only be the last segment of a pattern: it matches zero or more trailing segments", index, offset);
            }

            return null;
        }

        var i = segment.IndexOfAnyExcept(SegmentChars);
        if (i >= 0)
        {
            var c = segment[i];
            var position = offset + i + 1;
            string hint;
            if (c == '*')
            {
                hint = isPattern
                    ? "'*' is not a wildcard here: use '+' for exactly one segment or '#' (last) for any number of segments"
                    : "'*' is not allowed; wildcards belong in subscription patterns ('+' or '#')";
            }
            else if (c is '+' or '#')
            {
                hint = isPattern
                    ? $"a wildcard must be a whole segment: write '{c}' alone between dots"
                    : "wildcards are allowed in subscription patterns only";
            }
            else if (c is >= 'A' and <= 'Z')
            {
                hint = "upper-case letters are not allowed; use [a-z0-9_-]";
            }
            else
            {
                hint = "allowed characters are a-z, 0-9, '_' and '-'";
            }

            var shown = char.IsControl(c) || char.IsWhiteSpace(c) ? $"U+{(int)c:X4}" : $"'{c}'";
            return TopicValidation.Fail($"segment {index} of the {what} has {shown} at character {position}: {hint}", index, offset + i);
        }

        if (index == 1 && segment is not "events" && segment is not "control")
        {
            var allowed = isPattern ? "'events', 'control', '+' or '#'" : "'events' or 'control'";
            return TopicValidation.Fail($"segment 1 of the {what} is '{segment}' (at character {at}); a {what} must begin with {allowed}", index, offset);
        }

        return null;
    }
}

/// <summary>The outcome of checking a topic or pattern.</summary>
/// <param name="Error">What is wrong and where, or null when valid.</param>
/// <param name="Segment">1-based segment number the error is in, or 0.</param>
/// <param name="Offset">0-based character offset of the error, or -1.</param>
public readonly record struct TopicValidation(string? Error, int Segment, int Offset)
{
    public static TopicValidation Valid => new(null, 0, -1);

    public bool IsValid => Error is null;

    internal static TopicValidation Fail(string error, int segment = 0, int offset = -1) => new(error, segment, offset);
}

/// <summary>A topic or pattern broke the topic rules.</summary>
public sealed class TopicFormatException(string message) : FormatException(message);

/// <summary>Walks the '.'-separated segments of a topic without allocating.</summary>
public ref struct SegmentEnumerator(string value)
{
    private readonly string _value = value;
    private int _next = 0;

    public ReadOnlySpan<char> Current { get; private set; }

    public readonly SegmentEnumerator GetEnumerator() => this;

    public bool MoveNext()
    {
        if (_next > _value.Length)
        {
            return false;
        }

        var end = _value.IndexOf(TopicRules.Separator, _next);
        if (end < 0)
        {
            end = _value.Length;
        }

        Current = _value.AsSpan(_next, end - _next);
        _next = end + 1;
        return true;
    }
}
