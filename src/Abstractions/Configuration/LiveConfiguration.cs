using Microsoft.Extensions.Configuration;

namespace DaemonEye.Configuration;

/// <summary>
/// The configuration the agent's services read: a snapshot of a validated configuration that a reload
/// replaces in one step (<see cref="Apply"/>), so that <c>IOptionsMonitor&lt;T&gt;</c> readers see the values
/// from before a reload or all of its live values, never some of them, and never an unvalidated file. Keys
/// outside <see cref="LiveKeys"/> keep the values the agent started with. The file-backed configuration
/// (with its sources, for messages that name a file and line) stays with the checks; this one holds values only.
/// </summary>
public sealed class LiveConfiguration : IConfigurationSource
{
    private readonly Provider _provider;

    /// <param name="initial">the validated configuration the agent starts with</param>
    public LiveConfiguration(IConfiguration initial) => _provider = new Provider(Flatten(initial));

    /// <summary>
    /// The keys a reload applies while the agent runs; a change to any other key is logged as needing an
    /// agent restart. Per-connection broker limits apply to connections opened after the reload (an open
    /// connection keeps the limits it was accepted with). The <c>collectors</c> list is applied by the
    /// supervisor (added, removed, changed collectors only).
    /// </summary>
    public static IReadOnlyList<string> LiveKeys { get; } =
    [
        "logging.level",
        "broker.message_buffer_size",
        "broker.max_outbound_bytes",
        "broker.max_frame_size",
        "broker.max_subscriptions_per_connection",
        "broker.max_topics",
        "broker.max_topics_per_connection",
        "broker.correlation_window",
        "rpc.default_timeout_seconds",
        "rpc.max_pending_requests",
        "rpc.enable_correlation_tracking",
    ];

    /// <summary>True when <paramref name="dottedKey"/> (<c>broker.max_frame_size</c>) changes live on a reload.</summary>
    public static bool IsLive(string dottedKey) => LiveKeys.Contains(dottedKey, StringComparer.OrdinalIgnoreCase);

    public IConfigurationProvider Build(IConfigurationBuilder builder) => _provider;

    /// <summary>
    /// What applying <paramref name="next"/> (already validated) would do: the live keys whose value changes,
    /// and the other keys (outside <c>collectors</c>) that differ from what the agent runs with and so need an
    /// agent restart. Dotted, lower case, in order; list elements are named by their list (<c>security.allowed_uids</c>).
    /// </summary>
    public ReloadPlan Plan(IConfiguration next)
    {
        var current = _provider.Values;
        var wanted = Flatten(next);
        var live = new SortedSet<string>(StringComparer.Ordinal);
        var restart = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var key in current.Keys.Union(wanted.Keys, StringComparer.OrdinalIgnoreCase))
        {
            if (IsCollectors(key)
                || (current.TryGetValue(key, out var a) && wanted.TryGetValue(key, out var b) && string.Equals(a, b, StringComparison.Ordinal)))
            {
                continue;
            }

            var dotted = Dotted(key);
            (IsLive(dotted) ? live : restart).Add(dotted);
        }

        return new ReloadPlan([.. live], [.. restart]);
    }

    /// <summary>
    /// What the agent would run with after applying <paramref name="next"/>: its live keys and its
    /// <c>collectors</c> list, every other key as the agent started. Validate it before <see cref="Apply"/>:
    /// a live value may contradict a kept one (e.g. max_topics_per_connection above a max_topics that needs a restart).
    /// </summary>
    public IConfiguration Effective(IConfiguration next) =>
        new ConfigurationBuilder().AddInMemoryCollection(Merge(next)).Build();

    /// <summary>
    /// Applies <paramref name="next"/> (already validated, and its <see cref="Effective"/> too): its live keys and
    /// its <c>collectors</c> list take effect, every other key keeps the value the agent started with. Readers are told once.
    /// </summary>
    public void Apply(IConfiguration next) => _provider.Replace(Merge(next));

    private Dictionary<string, string?> Merge(IConfiguration next)
    {
        var merged = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        foreach (var (key, value) in _provider.Values)
        {
            if (!IsCollectors(key) && !IsLive(Dotted(key)))
            {
                merged[key] = value;
            }
        }

        foreach (var (key, value) in Flatten(next))
        {
            if (IsCollectors(key) || IsLive(Dotted(key)))
            {
                merged[key] = value;
            }
        }

        return merged;
    }

    private static bool IsCollectors(string key) =>
        key.StartsWith(CollectorDefinition.SectionName + ":", StringComparison.OrdinalIgnoreCase)
        || string.Equals(key, CollectorDefinition.SectionName, StringComparison.OrdinalIgnoreCase);

    /// <summary><c>broker:max_frame_size</c> → <c>broker.max_frame_size</c>; <c>security:allowed_uids:0</c> → <c>security.allowed_uids</c>.</summary>
    private static string Dotted(string key) =>
        string.Join('.', key.Split(':').Where(part => !part.All(char.IsAsciiDigit))).ToLowerInvariant();

    private static Dictionary<string, string?> Flatten(IConfiguration configuration) =>
        configuration.AsEnumerable()
            .Where(kv => kv.Value is not null)
            .ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.OrdinalIgnoreCase);

    private sealed class Provider(Dictionary<string, string?> data) : ConfigurationProvider
    {
        private volatile Dictionary<string, string?> _values = data;

        public IReadOnlyDictionary<string, string?> Values => _values;

        public override void Load() => Data = _values;

        public void Replace(Dictionary<string, string?> next)
        {
            _values = next;
            Data = next; // one reference swap: a reader sees the old values or the new ones
            OnReload();
        }
    }
}

/// <summary>What a reload changes: <see cref="Live"/> keys take effect now; <see cref="NeedRestart"/> keys only when the agent restarts.</summary>
public sealed record ReloadPlan(IReadOnlyList<string> Live, IReadOnlyList<string> NeedRestart);
