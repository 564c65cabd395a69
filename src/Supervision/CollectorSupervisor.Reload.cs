using DaemonEye.Configuration;
using Microsoft.Extensions.Logging;

namespace DaemonEye.Supervision;

/// <summary>What a reload of the collectors list did.</summary>
internal sealed record CollectorChanges(IReadOnlyList<string> Added, IReadOnlyList<string> Removed, IReadOnlyList<string> Changed)
{
    public bool Any => Added.Count + Removed.Count + Changed.Count > 0;

    public override string ToString() =>
        $"added [{string.Join(", ", Added)}], removed [{string.Join(", ", Removed)}], changed [{string.Join(", ", Changed)}]";
}

/// <summary>Applying a reloaded <c>collectors</c> list: only the collectors added, removed or changed are touched.</summary>
internal sealed partial class CollectorSupervisor
{
    private readonly SemaphoreSlim _reloadGate = new(1, 1);

    /// <summary>
    /// Makes the supervised collectors those of <paramref name="next"/> (already validated): a removed
    /// collector is stopped and forgotten; an added one is started (when enabled); a changed one
    /// (executable, arguments, environment, type or enabled) is stopped and started with its new
    /// definition. The others are left alone.
    /// </summary>
    public async Task<CollectorChanges> ApplyCollectorsAsync(IReadOnlyList<CollectorDefinition> next, CancellationToken cancellationToken)
    {
        await _reloadGate.WaitAsync(cancellationToken);
        try
        {
            var wanted = next.ToDictionary(d => d.Id, StringComparer.Ordinal);
            var removed = _runners.Keys.Where(id => !wanted.ContainsKey(id)).Order(StringComparer.Ordinal).ToList();
            var added = wanted.Keys.Where(id => !_runners.ContainsKey(id)).Order(StringComparer.Ordinal).ToList();
            var changed = wanted.Keys.Where(id => _runners.TryGetValue(id, out var r) && !SameDefinition(r.Definition, wanted[id])).Order(StringComparer.Ordinal).ToList();

            foreach (var id in removed.Concat(changed))
            {
                if (_runners.TryRemove(id, out var old))
                {
                    var reason = removed.Contains(id) ? "removed from the configuration (reload)" : "its configuration changed (reload)";
                    await old.StopAsync(graceful: true, reason, null, cancellationToken);
                }
            }

            foreach (var id in removed)
            {
                _directory.Remove(id);
            }

            foreach (var id in added.Concat(changed))
            {
                var runner = NewRunner(wanted[id]);
                _runners[id] = runner;
                BeginSupervising(runner, added.Contains(id) ? "added by a configuration reload" : "restarted with its new configuration (reload)");
            }

            var changes = new CollectorChanges(added, removed, changed);
            var summary = changes.ToString();
            LogCollectorsReloaded(_logger, summary);
            return changes;
        }
        finally
        {
            _reloadGate.Release();
        }
    }

    private static bool SameDefinition(CollectorDefinition a, CollectorDefinition b) =>
        a.Executable == b.Executable && a.Enabled == b.Enabled && a.EffectiveType == b.EffectiveType
        && a.Arguments.SequenceEqual(b.Arguments, StringComparer.Ordinal)
        && a.Environment.Count == b.Environment.Count
        && a.Environment.All(kv => b.Environment.TryGetValue(kv.Key, out var v) && v == kv.Value);

    [LoggerMessage(EventId = 4220, Level = LogLevel.Information, Message = "Collectors reloaded: {Changes}")]
    private static partial void LogCollectorsReloaded(ILogger logger, string changes);
}
