using System.Globalization;
using System.Text;

namespace DaemonEye.Logging;

/// <summary>
/// Text a peer chose (a client id, a client version, an RPC target, a collector's output line),
/// made safe for one log line: every character that could end the line, hide text or change how a
/// terminal shows what follows is written as a visible escape, and the result is capped in length.
/// The one place this is done; every log line that carries such text goes through it.
/// </summary>
/// <remarks>
/// Escaped: C0 and C1 control characters and DEL (<c>\n</c>, <c>\r</c>, <c>\t</c>, <c>\0</c>, else
/// <c>\xHH</c>, so ESC is <c>\x1B</c>), Unicode format characters (bidi embeddings, overrides and
/// isolates, zero-width characters, the BOM, tag characters: <c>\u202E</c>, <c>\U000E0041</c>), line and
/// paragraph separators, and lone surrogates. A backslash is left as it is, so escaping twice gives the
/// same text as escaping once (a detail built from escaped parts can be escaped again when logged).
/// Text longer than the cap keeps its beginning and ends with <c>…[+N chars]</c>, N the characters
/// of the original left out.
/// </remarks>
public static class LogText
{
    /// <summary>The cap for ids, versions, names and details: most of a line, never a page.</summary>
    public const int DefaultMaxLength = 256;

    /// <summary>The cap for a relayed output line (a collector's stdout or stderr).</summary>
    public const int LineMaxLength = 4096;

    /// <summary>The smallest cap accepted (room for some text and the truncation suffix).</summary>
    public const int MinMaxLength = 32;

    /// <summary>Characters kept free for the truncation suffix <c>…[+N chars]</c> (N up to 10 digits).</summary>
    private const int SuffixReserve = 24;

    /// <summary>
    /// <paramref name="text"/> with unsafe characters escaped and at most <paramref name="maxLength"/>
    /// characters long; the same instance when nothing needed changing (no allocation).
    /// </summary>
    public static string Escape(string? text, int maxLength = DefaultMaxLength)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, MinMaxLength);
        if (string.IsNullOrEmpty(text))
        {
            return string.Empty;
        }

        var length = EscapedLength(text, maxLength + 1);
        if (length == text.Length && length <= maxLength)
        {
            return text;
        }

        var fits = length <= maxLength;
        var budget = fits ? maxLength : maxLength - SuffixReserve;
        var output = new StringBuilder(Math.Min(length, maxLength));
        var i = 0;
        while (i < text.Length)
        {
            var width = Width(text, i, out var consumed);
            if (output.Length + width > budget)
            {
                break;
            }

            Append(output, text, i, consumed, width);
            i += consumed;
        }

        if (!fits)
        {
            output.Append("…[+").Append((text.Length - i).ToString(CultureInfo.InvariantCulture)).Append(" chars]");
        }

        return output.ToString();
    }

    /// <summary>True when <paramref name="text"/> would be logged as it is.</summary>
    public static bool IsSafe(string? text, int maxLength = DefaultMaxLength) => text is null || ReferenceEquals(Escape(text, maxLength), text);

    /// <summary>The escaped length of <paramref name="text"/>, counting stops once it passes <paramref name="stopAt"/>.</summary>
    private static int EscapedLength(string text, int stopAt)
    {
        var length = 0;
        for (var i = 0; i < text.Length && length <= stopAt;)
        {
            length += Width(text, i, out var consumed);
            i += consumed;
        }

        return length;
    }

    /// <summary>How many output characters the character (or surrogate pair) at <paramref name="i"/> takes.</summary>
    private static int Width(string text, int i, out int consumed)
    {
        var c = text[i];
        consumed = 1;
        if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
        {
            consumed = 2;
            var rune = new Rune(c, text[i + 1]);
            return IsUnsafe(Rune.GetUnicodeCategory(rune)) ? 10 : 2; // \U000E0041
        }

        if (char.IsSurrogate(c))
        {
            return 6; // a lone surrogate: \uD800
        }

        if (c < 0x20 || c is >= '\u007F' and <= '\u009F')
        {
            return c is '\n' or '\r' or '\t' or '\0' ? 2 : 4;
        }

        return c < 0x80 || !IsUnsafe(CharUnicodeInfo.GetUnicodeCategory(c)) ? 1 : 6;
    }

    private static bool IsUnsafe(UnicodeCategory category) => category is UnicodeCategory.Control or UnicodeCategory.Format
        or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator or UnicodeCategory.Surrogate;

    private static void Append(StringBuilder output, string text, int i, int consumed, int width)
    {
        if (width == consumed)
        {
            output.Append(text, i, consumed);
            return;
        }

        var c = text[i];
        switch (width)
        {
            case 2:
                output.Append(c switch { '\n' => @"\n", '\r' => @"\r", '\t' => @"\t", _ => @"\0" });
                break;
            case 4:
                output.Append(@"\x").Append(((int)c).ToString("X2", CultureInfo.InvariantCulture));
                break;
            case 6:
                output.Append(@"\u").Append(((int)c).ToString("X4", CultureInfo.InvariantCulture));
                break;
            default:
                output.Append(@"\U").Append(char.ConvertToUtf32(c, text[i + 1]).ToString("X8", CultureInfo.InvariantCulture));
                break;
        }
    }
}

/// <summary>
/// A log argument a peer chose: formatted (in the message and as a structured property) through
/// <see cref="LogText.Escape"/>, and only when the line is written. A <c>[LoggerMessage]</c>
/// parameter of this type cannot be handed a raw string by mistake.
/// </summary>
public readonly record struct Untrusted(string? Text, int MaxLength = LogText.DefaultMaxLength)
{
    public override string ToString() => LogText.Escape(Text, MaxLength);

    public static implicit operator Untrusted(string? text) => new(text);
}

/// <summary>A line of output a peer wrote (a collector's stdout or stderr): <see cref="Untrusted"/> with the longer cap <see cref="LogText.LineMaxLength"/>.</summary>
public readonly record struct UntrustedLine(string? Text)
{
    public override string ToString() => LogText.Escape(Text, LogText.LineMaxLength);

    public static implicit operator UntrustedLine(string? text) => new(text);
}
