using DaemonEye.Protocol.Filesystem.V1;
using DaemonEye.Protocol.Network.V1;
using DaemonEye.Protocol.Process.V1;
using Microsoft.Data.Sqlite;

namespace DaemonEye.Coordination;

/// <summary>What one update of the resident tables did: a full load (the first, or the first after a reset), or the changes per table.</summary>
public sealed record TableChanges(bool FullLoad, IReadOnlyDictionary<string, RowChanges> Tables)
{
    public static readonly TableChanges None = new(false, new Dictionary<string, RowChanges>());

    public int Inserted => Tables.Values.Sum(t => t.Inserted);

    public int Updated => Tables.Values.Sum(t => t.Updated);

    public int Deleted => Tables.Values.Sum(t => t.Deleted);

    /// <summary>For the log: "full load, N rows" or "I inserted, U updated, D deleted".</summary>
    public string Summary => FullLoad ? $"full load, {Inserted} rows" : $"{Inserted} inserted, {Updated} updated, {Deleted} deleted";
}

/// <summary>
/// The snapshot tables kept between evaluations (<see cref="SnapshotDatabase.CreateResident"/>): each
/// table's rows by their natural identity, so that an evaluation applies only what changed since the
/// previous one. Identities: a process by (pid, start time), the table's primary key (the first
/// collector to report it wins, as in the full load); a connection by (collector, transport, family,
/// local and remote address and port, inode); a listener by (collector, transport, family, address,
/// port, inode); a file event by (collector, run, sequence); a file hash by (collector, path); a
/// <c>snapshots</c> row by its position. Where an identity may repeat within one snapshot (two sockets
/// with inode 0 on one 5-tuple), the n-th repeat is its own identity, so the table holds as many rows
/// as the data. A held row is compared with the new one column by column
/// (<c>SnapshotDatabase.SameColumns</c>, one per row type beside its <c>Bind</c>), except a file event
/// whose snapshot gives its run (<c>FileSnapshot.run</c>): fsmond numbers each event once per run and
/// never changes it, so a held (collector, run, sequence) is already the row
/// (<see cref="ResidentTable{TKey, TRow}"/>, <c>fixedValue</c>). An event that names another collector
/// than the snapshot's, or comes without a run, has run 0 in its key and is compared.
/// The watch lists are replaced whole when the configuration changed.
/// </summary>
internal sealed class SnapshotTables : IDisposable
{
    private readonly SqliteConnection _connection;
    private readonly ResidentTable<(long Pid, long StartTimeUnixMs), Collected<ProcessInfo>> _processes;
    private readonly ResidentTable<int, SnapshotRow> _snapshots;
    private readonly ResidentTable<ConnectionKey, Collected<Connection>> _connections;
    private readonly ResidentTable<ListenerKey, Collected<Listener>> _listeners;
    private readonly ResidentTable<FileEventKey, Collected<FileEvent>> _fileEvents;
    private readonly ResidentTable<(string CollectorId, string Path, int Repeat), Collected<FileHash>> _fileHashes;
    private List<(string List, string[] Patterns)>? _watchLists;

    public SnapshotTables(SqliteConnection connection)
    {
        _connection = connection;
        _processes = new(connection, "processes", SnapshotDatabase.ProcessColumns, SnapshotDatabase.Bind, SnapshotDatabase.SameColumns);
        _snapshots = new(connection, "snapshots", SnapshotDatabase.SnapshotColumns, SnapshotDatabase.Bind, static (a, b) => a.Equals(b));
        _connections = new(connection, "connections", SnapshotDatabase.ConnectionColumns, SnapshotDatabase.Bind, SnapshotDatabase.SameColumns);
        _listeners = new(connection, "listening_ports", SnapshotDatabase.ListenerColumns, SnapshotDatabase.Bind, SnapshotDatabase.SameColumns);
        _fileEvents = new(
            connection, "file_events", SnapshotDatabase.FileEventColumns, SnapshotDatabase.Bind, SnapshotDatabase.SameColumns, static key => key.Run != 0);
        _fileHashes = new(connection, "file_hashes", SnapshotDatabase.FileHashColumns, SnapshotDatabase.Bind, SnapshotDatabase.SameColumns);
    }

    /// <summary>Processes in the new data already given by an earlier snapshot (kept once), in the last update.</summary>
    public int DuplicateProcesses { get; private set; }

    /// <summary>Rows per table, as <see cref="SnapshotDatabase.TableRows"/> names them.</summary>
    public Dictionary<string, int> Rows() => new(StringComparer.Ordinal)
    {
        ["processes"] = _processes.Count,
        ["snapshots"] = _snapshots.Count,
        ["connections"] = _connections.Count,
        ["listening_ports"] = _listeners.Count,
        ["file_events"] = _fileEvents.Count,
        ["file_hashes"] = _fileHashes.Count,
    };

    /// <summary>Makes the tables hold <paramref name="data"/> (inside the caller's transaction); what changed per table.</summary>
    public Dictionary<string, RowChanges> Apply(EvaluationData data)
    {
        var changes = new Dictionary<string, RowChanges>(StringComparer.Ordinal);
        ApplyProcesses(data.Processes);
        ApplyNetworks(data.Networks);
        ApplyFiles(data.Files, data.EventsSinceUnixMs);
        changes[_processes.Name] = _processes.Changes;
        changes[_snapshots.Name] = _snapshots.Changes;
        changes[_connections.Name] = _connections.Changes;
        changes[_listeners.Name] = _listeners.Changes;
        changes[_fileEvents.Name] = _fileEvents.Changes;
        changes[_fileHashes.Name] = _fileHashes.Changes;
        changes["watch_lists"] = ApplyWatchLists(data.WatchLists);
        return changes;
    }

    public void Dispose()
    {
        _processes.Dispose();
        _snapshots.Dispose();
        _connections.Dispose();
        _listeners.Dispose();
        _fileEvents.Dispose();
        _fileHashes.Dispose();
    }

    private void ApplyProcesses(List<ProcessSnapshot> snapshots)
    {
        _processes.Begin(snapshots.Sum(s => s.Processes.Count));
        _snapshots.Begin(snapshots.Count);
        var duplicates = 0;
        for (var i = 0; i < snapshots.Count; i++)
        {
            var snap = snapshots[i];
            _snapshots.Offer(i, SnapshotRow.Of(snap));
            foreach (var info in snap.Processes)
            {
                if (!_processes.Offer((info.Pid, (long)info.StartTimeUnixMs), new Collected<ProcessInfo>(info, snap.CollectorId)))
                {
                    duplicates++;
                }
            }
        }

        _processes.Sweep();
        _snapshots.Sweep();
        DuplicateProcesses = duplicates;
    }

    private void ApplyNetworks(List<NetworkSnapshot> snapshots)
    {
        _connections.Begin(snapshots.Sum(s => s.Connections.Count));
        _listeners.Begin(snapshots.Sum(s => s.Listeners.Count));
        foreach (var snap in snapshots)
        {
            foreach (var x in snap.Connections)
            {
                var row = new Collected<Connection>(x, snap.CollectorId);
                var key = new ConnectionKey(snap.CollectorId, x.Transport, x.Family, x.Local?.Address, x.Local?.Port ?? 0, x.Remote?.Address, x.Remote?.Port ?? 0, x.Inode, 0);
                while (!_connections.Offer(key, row))
                {
                    key = key with { Repeat = key.Repeat + 1 };
                }
            }

            foreach (var x in snap.Listeners)
            {
                var row = new Collected<Listener>(x, snap.CollectorId);
                var key = new ListenerKey(snap.CollectorId, x.Transport, x.Family, x.Local?.Address, x.Local?.Port ?? 0, x.Inode, 0);
                while (!_listeners.Offer(key, row))
                {
                    key = key with { Repeat = key.Repeat + 1 };
                }
            }
        }

        _connections.Sweep();
        _listeners.Sweep();
    }

    private void ApplyFiles(List<FileSnapshot> snapshots, long sinceUnixMs)
    {
        _fileEvents.Begin(snapshots.Sum(s => s.Events.Count));
        _fileHashes.Begin(snapshots.Sum(s => s.Hashes.Count));
        foreach (var snap in snapshots)
        {
            foreach (var x in snap.Events)
            {
                if (SnapshotDatabase.TimeUnixMs(x) < sinceUnixMs)
                {
                    continue;
                }

                var collector = SnapshotDatabase.EventCollectorId(x, snap);
                var row = new Collected<FileEvent>(x, collector);
                var key = new FileEventKey(collector, string.Equals(collector, snap.CollectorId, StringComparison.Ordinal) ? snap.Run : 0, x.Sequence, 0);
                while (!_fileEvents.Offer(key, row))
                {
                    key = key with { Repeat = key.Repeat + 1 };
                }
            }

            foreach (var x in snap.Hashes)
            {
                var row = new Collected<FileHash>(x, snap.CollectorId);
                for (var repeat = 0; !_fileHashes.Offer((snap.CollectorId, x.Path, repeat), row); repeat++)
                {
                }
            }
        }

        _fileEvents.Sweep();
        _fileHashes.Sweep();
    }

    private RowChanges ApplyWatchLists(IReadOnlyDictionary<string, IReadOnlyList<string>> lists)
    {
        var now = lists.Select(l => (List: l.Key, Patterns: l.Value.ToArray())).ToList();
        if (_watchLists is { } before && before.Count == now.Count
            && before.Zip(now).All(p => string.Equals(p.First.List, p.Second.List, StringComparison.Ordinal) && p.First.Patterns.AsSpan().SequenceEqual(p.Second.Patterns)))
        {
            return default;
        }

        var deleted = _watchLists?.Sum(l => l.Patterns.Length) ?? 0;
        SnapshotDatabase.Execute(_connection, "DELETE FROM watch_lists");
        WatchListTable.Load(_connection, lists);
        _watchLists = now;
        return new RowChanges(now.Sum(l => l.Patterns.Length), 0, deleted);
    }

    private readonly record struct ConnectionKey(
        string CollectorId, Transport Transport, IpFamily Family, string? LocalAddress, uint LocalPort, string? RemoteAddress, uint RemotePort, ulong Inode, int Repeat);

    /// <summary>A file event's name: its run is 0 when the snapshot gave none for its collector (then its value is compared).</summary>
    private readonly record struct FileEventKey(string CollectorId, ulong Run, ulong Sequence, int Repeat);

    private readonly record struct ListenerKey(string CollectorId, Transport Transport, IpFamily Family, string? Address, uint Port, ulong Inode, int Repeat);
}
