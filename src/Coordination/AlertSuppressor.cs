namespace DaemonEye.Coordination;

/// <summary>
/// De-duplicates alerts per rule and key: the first alert of a (rule, key) is published, further ones
/// within the suppression window are counted, not published; the next one after the window carries the
/// count. Bounded: keys idle for a whole window are forgotten when the table grows. Thread-safe.
/// </summary>
internal sealed class AlertSuppressor(TimeProvider time, TimeSpan window, int maxKeys = 100_000)
{
    private readonly Lock _gate = new();
    private readonly Dictionary<(string Rule, string Key), Entry> _entries = [];
    private long _suppressed;

    /// <summary>Alerts suppressed since start.</summary>
    public long Suppressed => Interlocked.Read(ref _suppressed);

    /// <summary>True when the alert is to be published; <paramref name="suppressedBefore"/>: how many of its key were held back since the last one.</summary>
    public bool ShouldPublish(string ruleId, string key, out uint suppressedBefore)
    {
        suppressedBefore = 0;
        if (window <= TimeSpan.Zero)
        {
            return true;
        }

        var now = time.GetUtcNow();
        lock (_gate)
        {
            if (_entries.TryGetValue((ruleId, key), out var entry) && now - entry.Published < window)
            {
                entry.Suppressed++;
                Interlocked.Increment(ref _suppressed);
                return false;
            }

            if (entry is null && _entries.Count >= maxKeys)
            {
                foreach (var stale in _entries.Where(e => now - e.Value.Published >= window).Select(e => e.Key).ToList())
                {
                    _entries.Remove(stale);
                }
            }

            suppressedBefore = entry?.Suppressed ?? 0;
            _entries[(ruleId, key)] = new Entry { Published = now };
            return true;
        }
    }

    private sealed class Entry
    {
        public DateTimeOffset Published { get; init; }

        public uint Suppressed { get; set; }
    }
}
