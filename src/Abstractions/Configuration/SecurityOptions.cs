using DaemonEye.Hosting;
using DaemonEye.Topics;
using Microsoft.Extensions.Configuration;

namespace DaemonEye.Configuration;

/// <summary>
/// The <c>security</c> section: who may connect to the agent's sockets (besides the agent's own
/// user and root), the group the sockets are shared with, the role other users get, and the
/// registration tokens of collectors started outside the agent.
/// </summary>
public sealed class SecurityOptions
{
    public const string SectionName = "security";

    /// <summary>Roles <see cref="OtherUidRole"/> may name.</summary>
    public static readonly IReadOnlyList<string> OtherUidRoles = ["subscriber", "client"];

    /// <summary>Shortest registration token accepted.</summary>
    public const int MinTokenLength = 16;

    /// <summary>Longest registration token accepted (the Hello field's limit too).</summary>
    public const int MaxTokenLength = 256;

    /// <summary>User ids that may connect besides the agent's own and root.</summary>
    /// <remarks>Kept as text so a value that is not a number is reported, not skipped by the binder.</remarks>
    [ConfigurationKeyName("allowed_uids")]
    public List<string> AllowedUids { get; set; } = [];

    /// <summary>Group ids whose members (primary or supplementary group of the peer process) may connect.</summary>
    [ConfigurationKeyName("allowed_gids")]
    public List<string> AllowedGids { get; set; } = [];

    /// <summary>The numeric ids of <see cref="AllowedUids"/> (valid ones; call after <see cref="Validate"/>).</summary>
    public IEnumerable<uint> AllowedUidValues() => Numbers(AllowedUids);

    /// <summary>The numeric ids of <see cref="AllowedGids"/> (valid ones; call after <see cref="Validate"/>).</summary>
    public IEnumerable<uint> AllowedGidValues() => Numbers(AllowedGids);

    private static IEnumerable<uint> Numbers(IEnumerable<string> values)
    {
        foreach (var value in values)
        {
            if (TryId(value, out var id))
            {
                yield return id;
            }
        }
    }

    private static bool TryId(string? value, out uint id) =>
        uint.TryParse(value?.Trim(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out id) && id != uint.MaxValue;

    /// <summary>Group (name or number) the sockets and their directory belong to. Empty: sockets
    /// 0600 in a 0700 directory; set: sockets 0660 and the directory 0710, both of this group.</summary>
    [ConfigurationKeyName("socket_group")]
    public string? SocketGroup { get; set; }

    /// <summary>The role a client of another (allowed) user gets when it asks for cli or client:
    /// <c>subscriber</c> (read-only) or <c>client</c> (may also publish on events.# and call RPCs).</summary>
    [ConfigurationKeyName("other_uid_role")]
    public string OtherUidRole { get; set; } = "subscriber";

    /// <summary>
    /// Collector ids that may make RPC calls as an operator does (lifecycle calls to other collectors,
    /// configuration, tasks): a coordinating collector. Empty (the default): collectors make no calls
    /// (rule <c>collector.rpc_call</c>).
    /// </summary>
    [ConfigurationKeyName("collector_callers")]
    public List<string> CollectorCallers { get; set; } = [];

    /// <summary>Collector id to the token a collector started outside the agent must present in Hello.</summary>
    [ConfigurationKeyName("registration_tokens")]
    [Secret]
    public Dictionary<string, string> RegistrationTokens { get; set; } = new(StringComparer.Ordinal);

    /// <summary>The socket group's id, null when none is configured. Call after <see cref="Validate"/>.</summary>
    public uint? ResolveSocketGroupId() =>
        string.IsNullOrWhiteSpace(SocketGroup) ? null : Posix.TryResolveGroup(SocketGroup.Trim(), out var gid) ? gid : null;

    /// <summary>Every problem with these values, each naming the key, the value and what is allowed.</summary>
    public IEnumerable<string> Validate()
    {
        if (!string.IsNullOrWhiteSpace(SocketGroup) && !Posix.TryResolveGroup(SocketGroup.Trim(), out _))
        {
            yield return $"security.socket_group is '{SocketGroup}'; no such group on this host (give a group name or a numeric gid from /etc/group)";
        }

        for (var i = 0; i < AllowedUids.Count; i++)
        {
            if (!TryId(AllowedUids[i], out _))
            {
                yield return $"security.allowed_uids[{i}] is '{AllowedUids[i]}'; allowed: a numeric user id, 0 to 4294967294";
            }
        }

        for (var i = 0; i < AllowedGids.Count; i++)
        {
            if (!TryId(AllowedGids[i], out _))
            {
                yield return $"security.allowed_gids[{i}] is '{AllowedGids[i]}'; allowed: a numeric group id, 0 to 4294967294";
            }
        }

        if (!OtherUidRoles.Contains(OtherUidRole, StringComparer.OrdinalIgnoreCase))
        {
            yield return $"security.other_uid_role is '{OtherUidRole}'; allowed: {string.Join(", ", OtherUidRoles)}";
        }

        for (var i = 0; i < CollectorCallers.Count; i++)
        {
            var id = CollectorCallers[i] ?? string.Empty;
            if (id.Length == 0 || id.Contains('.', StringComparison.Ordinal) || !TopicRules.ValidateTopic(WellKnownTopics.CollectorPrefix + id).IsValid)
            {
                yield return $"security.collector_callers[{i}] is '{id}'; allowed: a collector id, 1 to {TopicRules.MaxSegmentLength} characters from [a-z0-9_-]";
            }
        }

        foreach (var (id, token) in RegistrationTokens)
        {
            var segment = TopicRules.ValidateTopic(WellKnownTopics.CollectorPrefix + id);
            if (id.Length == 0 || id.Contains('.', StringComparison.Ordinal) || !segment.IsValid)
            {
                yield return $"security.registration_tokens has collector id '{id}'; a collector id is 1 to {TopicRules.MaxSegmentLength} characters from [a-z0-9_-]";
            }

            if (token is null || token.Length is < MinTokenLength or > MaxTokenLength || !IsPrintableAscii(token))
            {
                yield return $"security.registration_tokens.{id} is {(token is null ? "empty" : $"{token.Length} characters")}; a token is {MinTokenLength} to {MaxTokenLength} printable ASCII characters without spaces (e.g. from: openssl rand -hex 32)";
            }
        }
    }

    private static bool IsPrintableAscii(string value)
    {
        foreach (var c in value)
        {
            if (c is < '!' or > '~')
            {
                return false;
            }
        }

        return true;
    }
}
