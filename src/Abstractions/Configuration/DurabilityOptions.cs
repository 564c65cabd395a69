using System.Globalization;
using DaemonEye.Protocol;
using DaemonEye.Topics;
using Microsoft.Extensions.Configuration;

namespace DaemonEye.Configuration;

/// <summary>
/// The <c>durability</c> section: which topics the agent appends to its durable log before it
/// delivers them, where the log lives, how long it keeps it, and when it syncs it to disk
/// (docs/durability.md).
/// </summary>
public sealed class DurabilityOptions
{
    public const string SectionName = "durability";

    /// <summary>The fsync policies: <c>checkpoint</c> (the default) and <c>batch</c>.</summary>
    public static readonly string[] FsyncPolicies = ["checkpoint", "batch"];

    /// <summary>The default durable topics: every alert, and the collectors' lifecycle (the audit trail of coverage gaps).</summary>
    public static readonly string[] DefaultTopics = [WellKnownTopics.AllAlerts, WellKnownTopics.CollectorLifecycle];

    /// <summary>Off: nothing is logged and durable subscriptions are refused.</summary>
    [ConfigurationKeyName("enabled")]
    public bool Enabled { get; set; } = true;

    /// <summary>Topic patterns whose messages are logged before delivery. Empty in the file: <see cref="DefaultTopics"/>.</summary>
    [ConfigurationKeyName("topics")]
    public List<string> Topics { get; set; } = [];

    /// <summary>The log's directory. Empty: the agent's state directory (<see cref="Hosting.StatePaths"/>) + <c>/durable</c>.</summary>
    [ConfigurationKeyName("directory")]
    public string Directory { get; set; } = "";

    /// <summary>Messages older than this many seconds are removed (0: kept regardless of age).</summary>
    [ConfigurationKeyName("max_age_seconds")]
    public double MaxAgeSeconds { get; set; } = 7 * 24 * 3600;

    /// <summary>Payload bytes the log keeps at most; the oldest messages go first beyond it.</summary>
    [ConfigurationKeyName("max_bytes")]
    public long MaxBytes { get; set; } = 1L << 30;

    /// <summary><c>checkpoint</c>: survives a crash of the agent; <c>batch</c>: also survives a crash of the machine, at an fsync per published batch.</summary>
    [ConfigurationKeyName("fsync")]
    public string Fsync { get; set; } = "checkpoint";

    /// <summary>Delivered but unacknowledged messages a durable subscription may have at once (a client may ask for fewer: <c>Subscribe.max_in_flight</c>).</summary>
    [ConfigurationKeyName("max_ack_pending")]
    public int MaxAckPending { get; set; } = 10_000;

    /// <summary>The patterns in effect: the configured ones, or the defaults.</summary>
    public IReadOnlyList<string> EffectiveTopics => Topics.Count == 0 ? DefaultTopics : Topics;

    public bool SyncEveryBatch => string.Equals(Fsync, "batch", StringComparison.OrdinalIgnoreCase);

    public TimeSpan? MaxAge => MaxAgeSeconds > 0 ? TimeSpan.FromSeconds(MaxAgeSeconds) : null;

    /// <summary>The log's directory: the configured one, or the default.</summary>
    public string ResolvedDirectory() =>
        string.IsNullOrWhiteSpace(Directory) ? Path.Combine(Hosting.StatePaths.DefaultDirectory(), "durable") : Path.GetFullPath(Directory);

    /// <summary>Every problem with these values, each naming the key, the value and what is allowed.</summary>
    public IEnumerable<string> Validate()
    {
        for (var i = 0; i < Topics.Count; i++)
        {
            if (TopicRules.ValidatePattern(Topics[i]) is { IsValid: false } bad)
            {
                yield return $"durability.topics[{i}] is '{Topics[i]}'; {bad.Error}";
            }
        }

        if (!double.IsFinite(MaxAgeSeconds) || MaxAgeSeconds is < 0 or > 10 * 365 * 86400.0)
        {
            yield return string.Create(CultureInfo.InvariantCulture, $"durability.max_age_seconds is {MaxAgeSeconds}; allowed: 0 (no age limit) to 315360000");
        }

        if (MaxBytes is < 1 << 20 or > 1L << 40)
        {
            yield return $"durability.max_bytes is {MaxBytes}; allowed: 1048576 (1 MiB) to 1099511627776 (1 TiB)";
        }

        if (!FsyncPolicies.Contains(Fsync, StringComparer.OrdinalIgnoreCase))
        {
            yield return $"durability.fsync is '{Fsync}'; allowed: {string.Join(", ", FsyncPolicies)}";
        }

        if (MaxAckPending is < 1 or > ProtocolConstants.MaxDurableInFlight)
        {
            yield return $"durability.max_ack_pending is {MaxAckPending}; allowed: 1 to {ProtocolConstants.MaxDurableInFlight}";
        }
    }
}
