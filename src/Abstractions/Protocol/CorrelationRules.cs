namespace DaemonEye.Protocol;

/// <summary>
/// What a correlation id (<c>correlation_id</c>, <c>parent_correlation_id</c>,
/// <c>root_correlation_id</c>) may be: 1 to <see cref="ProtocolConstants.MaxCorrelationIdLength"/>
/// printable ASCII characters (<c>!</c> to <c>~</c>: no spaces, control characters or non-ASCII, so
/// ids are safe in logs and tables). Empty means absent (a Publish may omit them; an RPC request
/// must name itself).
/// </summary>
public static class CorrelationRules
{
    public const string Allowed = "1 to 128 printable ASCII characters ('!' to '~'; no spaces, control characters or non-ASCII)";

    /// <summary>True when <paramref name="utf8"/> is empty (absent) or a valid id.</summary>
    public static bool IsValidOrEmpty(ReadOnlySpan<byte> utf8) =>
        utf8.Length <= ProtocolConstants.MaxCorrelationIdLength && !utf8.ContainsAnyExceptInRange((byte)'!', (byte)'~');

    /// <summary>True when <paramref name="id"/> is empty (absent) or a valid id.</summary>
    public static bool IsValidOrEmpty(string? id) =>
        id is null || (id.Length <= ProtocolConstants.MaxCorrelationIdLength && !id.AsSpan().ContainsAnyExceptInRange('!', '~'));

    /// <summary>Describes why <paramref name="id"/> is not valid, for an error message; null when it is.</summary>
    public static string? Problem(string field, string? id)
    {
        if (IsValidOrEmpty(id))
        {
            return null;
        }

        return id!.Length > ProtocolConstants.MaxCorrelationIdLength
            ? $"{field} is {id.Length} characters long; allowed: {Allowed}"
            : $"{field} contains character U+{(int)id[id.AsSpan().IndexOfAnyExceptInRange('!', '~')]:X4}; allowed: {Allowed}";
    }
}
