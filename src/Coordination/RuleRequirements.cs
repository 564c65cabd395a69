using System.Collections.Concurrent;

namespace DaemonEye.Coordination;

/// <summary>What a rule reads: its tables (SQLite's answer) and the task types that fill them.</summary>
public sealed record RuleNeeds(IReadOnlyList<string> Tables, IReadOnlyList<string> TaskTypes);

/// <summary>
/// The needs of a rule's SQL: the tables it reads as SQLite reports them while compiling it
/// (<see cref="SnapshotDatabase.TablesRead(string)"/>), each mapped to the task type whose answers fill it
/// (<see cref="SnapshotDatabase.TaskTypeOfTable"/>; <c>watch_lists</c> is the agent's own and needs
/// none). Cached by SQL text.
/// </summary>
public static class RuleRequirements
{
    private const int MaxCached = 4096;
    private static readonly ConcurrentDictionary<string, RuleNeeds> Cache = new(StringComparer.Ordinal);
    private static readonly ConcurrentDictionary<string, RuleNeeds> EventCache = new(StringComparer.Ordinal);

    /// <summary>What <paramref name="rule"/> reads: snapshot tables and their task types, or event windows (no tasks).</summary>
    public static RuleNeeds Of(DetectionRule rule)
    {
        ArgumentNullException.ThrowIfNull(rule);
        return rule.IsEvent ? OfEvent(rule.Sql) : Of(rule.Sql);
    }

    /// <summary>The tables an event rule's SQL reads (event windows and watch lists); no task type fills them.</summary>
    public static RuleNeeds OfEvent(string sql)
    {
        ArgumentNullException.ThrowIfNull(sql);
        if (EventCache.TryGetValue(sql, out var needs))
        {
            return needs;
        }

        if (EventCache.Count >= MaxCached)
        {
            EventCache.Clear();
        }

        needs = new RuleNeeds(EventWindowDatabase.TablesRead(sql), []);
        EventCache[sql] = needs;
        return needs;
    }

    public static RuleNeeds Of(string sql)
    {
        ArgumentNullException.ThrowIfNull(sql);
        if (Cache.TryGetValue(sql, out var needs))
        {
            return needs;
        }

        if (Cache.Count >= MaxCached)
        {
            Cache.Clear();
        }

        var tables = SnapshotDatabase.TablesRead(sql);
        var types = tables
            .Select(t => SnapshotDatabase.TaskTypeOfTable.TryGetValue(t, out var type) ? type : null)
            .OfType<string>()
            .Distinct(StringComparer.Ordinal)
            .Order(StringComparer.Ordinal)
            .ToList();
        needs = new RuleNeeds(tables, types);
        Cache[sql] = needs;
        return needs;
    }
}
