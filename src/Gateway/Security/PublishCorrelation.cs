using DaemonEye.Protocol.Wire;
using DaemonEye.Protocol;

namespace DaemonEye.Gateway.Security;

/// <summary>
/// Checks the correlation ids of an encoded Publish (already scanned as well-formed by
/// <see cref="PublishFrame.Scan"/>) against <see cref="CorrelationRules"/>, on the bytes: no parse,
/// no allocation. Returns which field is wrong, or 0.
/// </summary>
internal static class PublishCorrelation
{
    private const int WireLen = 2;

    /// <summary>
    /// 0 when every correlation id is absent or valid; otherwise the CorrelationMetadata field number
    /// (1 id, 2 parent, 3 root) that is not. <paramref name="correlationId"/>: the publish's own id, or empty.
    /// </summary>
    public static int FindInvalidField(ReadOnlySpan<byte> publish, out ReadOnlySpan<byte> correlationId)
    {
        correlationId = default;
        var pos = 0;
        while (pos < publish.Length)
        {
            if (!ProtoWire.TryReadVarint(publish, ref pos, out var tag))
            {
                return 0; // Not ours to judge: the scanner has accepted the frame.
            }

            var wireType = (int)(tag & 7);
            if ((tag >> 3) == 3 && wireType == WireLen)
            {
                return TryLength(publish, ref pos, out var length) ? CheckCorrelation(publish.Slice(pos, length), out correlationId) : 0;
            }

            if (!Skip(publish, ref pos, wireType))
            {
                return 0;
            }
        }

        return 0;
    }

    private static int CheckCorrelation(ReadOnlySpan<byte> body, out ReadOnlySpan<byte> correlationId)
    {
        correlationId = default;
        var pos = 0;
        while (pos < body.Length)
        {
            if (!ProtoWire.TryReadVarint(body, ref pos, out var tag))
            {
                return 0;
            }

            var field = (int)(tag >> 3);
            var wireType = (int)(tag & 7);
            if (field is 1 or 2 or 3 && wireType == WireLen)
            {
                if (!TryLength(body, ref pos, out var length))
                {
                    return 0;
                }

                var value = body.Slice(pos, length);
                if (!CorrelationRules.IsValidOrEmpty(value))
                {
                    return field;
                }

                if (field == 1)
                {
                    correlationId = value;
                }

                pos += length;
            }
            else if (!Skip(body, ref pos, wireType))
            {
                return 0;
            }
        }

        return 0;
    }

    public static string FieldName(int field) => field switch
    {
        1 => "correlation.correlation_id",
        2 => "correlation.parent_correlation_id",
        _ => "correlation.root_correlation_id",
    };

    private static bool TryLength(ReadOnlySpan<byte> s, ref int pos, out int length)
    {
        length = 0;
        if (!ProtoWire.TryReadVarint(s, ref pos, out var v) || v > (ulong)(s.Length - pos))
        {
            return false;
        }

        length = (int)v;
        return true;
    }

    private static bool Skip(ReadOnlySpan<byte> s, ref int pos, int wireType)
    {
        switch (wireType)
        {
            case 0:
                return ProtoWire.TryReadVarint(s, ref pos, out _);
            case 1:
                pos += 8;
                return pos <= s.Length;
            case WireLen:
                if (!TryLength(s, ref pos, out var length))
                {
                    return false;
                }

                pos += length;
                return true;
            case 5:
                pos += 4;
                return pos <= s.Length;
            default:
                return false;
        }
    }
}
