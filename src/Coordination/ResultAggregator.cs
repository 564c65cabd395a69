using System.Security.Cryptography;
using DaemonEye.Protocol.Task.V1;

namespace DaemonEye.Coordination;

/// <summary>
/// Assembles one task's results: one entry per answer, ordered by collector and then by the
/// collector's own sequence number; a second result with the same (collector, sequence) and a result
/// whose payload is byte-identical to another collector's are dropped and counted as duplicates.
/// Not thread-safe: the coordinator calls it under its lock.
/// </summary>
internal sealed class ResultAggregator(string taskId)
{
    private readonly List<TaskResult> _results = [];
    private readonly HashSet<(string Collector, ulong Sequence)> _seen = [];
    private int _duplicates;

    public int Duplicates => _duplicates;

    public int Count => _results.Count;

    /// <summary>Adds a result; false (and counted) when it repeats one already held.</summary>
    public bool Offer(TaskResult result, string instanceId)
    {
        ArgumentNullException.ThrowIfNull(result);
        if (result.CollectorId.Length == 0)
        {
            result.CollectorId = instanceId;
        }

        if (result.TaskId.Length == 0)
        {
            result.TaskId = taskId;
        }

        if (!_seen.Add((result.CollectorId, result.Sequence)))
        {
            _duplicates++;
            return false;
        }

        _results.Add(result);
        return true;
    }

    /// <summary>Counts a result dropped elsewhere (a second answer for an assignment already answered).</summary>
    public void CountDuplicate() => _duplicates++;

    /// <summary>The results in order, identical payloads across collectors removed.</summary>
    public (List<TaskResult> Results, int Duplicates) Build()
    {
        var ordered = _results
            .OrderBy(r => r.CollectorId, StringComparer.Ordinal)
            .ThenBy(r => r.Sequence)
            .ToList();
        var kept = new List<TaskResult>(ordered.Count);
        var payloads = new Dictionary<(string Type, string Hash), string>();
        var duplicates = _duplicates;
        foreach (var result in ordered)
        {
            var key = (result.PayloadType, Convert.ToHexString(SHA256.HashData(result.Payload.Span)));
            if (payloads.TryGetValue(key, out var firstCollector) && !string.Equals(firstCollector, result.CollectorId, StringComparison.Ordinal))
            {
                duplicates++;
                continue;
            }

            payloads.TryAdd(key, result.CollectorId);
            kept.Add(result);
        }

        return (kept, duplicates);
    }
}
