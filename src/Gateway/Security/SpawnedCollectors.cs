using System.Collections.Concurrent;

namespace DaemonEye.Gateway.Security;

/// <summary>
/// The collector processes this agent started, by collector id and pid. The supervisor records
/// each start (right after the fork, long before the child can connect) and exit; the gateway asks
/// when a ROLE_COLLECTOR connection arrives, so a collector the agent spawned is recognised by the
/// pid the kernel reports for its socket and needs no token. Defined in the gateway so the
/// supervisor depends on the gateway and never the other way round.
/// </summary>
public sealed class SpawnedCollectors
{
    private readonly ConcurrentDictionary<string, int> _pids = new(StringComparer.Ordinal);

    /// <summary>The agent started <paramref name="pid"/> as collector <paramref name="collectorId"/>.</summary>
    public void Started(string collectorId, int pid) => _pids[collectorId] = pid;

    /// <summary>That process exited; its pid no longer identifies the collector.</summary>
    public void Exited(string collectorId, int pid) => _pids.TryRemove(new KeyValuePair<string, int>(collectorId, pid));

    /// <summary>True when <paramref name="pid"/> is the running process the agent started as <paramref name="collectorId"/>.</summary>
    public bool IsSpawned(string collectorId, int pid) => pid > 0 && _pids.TryGetValue(collectorId, out var known) && known == pid;

    /// <summary>True when <paramref name="pid"/> is a running process the agent started as any collector (its connections may use the reserved places).</summary>
    public bool IsSpawned(int pid)
    {
        if (pid <= 0)
        {
            return false;
        }

        foreach (var (_, known) in _pids)
        {
            if (known == pid)
            {
                return true;
            }
        }

        return false;
    }
}
