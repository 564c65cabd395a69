using System.Collections.Frozen;
using System.Globalization;
using DaemonEye.Protocol.Filesystem.V1;
using DaemonEye.Protocol.Network.V1;
using DaemonEye.Protocol.Process.V1;
using Microsoft.Data.Sqlite;

namespace DaemonEye.Coordination;

/// <summary>What one evaluation loads: every collector answer of every needed task type, plus the watch lists.</summary>
public sealed class EvaluationData
{
    public List<ProcessSnapshot> Processes { get; } = [];

    public List<NetworkSnapshot> Networks { get; } = [];

    public List<FileSnapshot> Files { get; } = [];

    /// <summary>The <c>watch_lists</c> table: list name → GLOB patterns.</summary>
    public IReadOnlyDictionary<string, IReadOnlyList<string>> WatchLists { get; init; } = new Dictionary<string, IReadOnlyList<string>>();

    /// <summary>Events older than this (Unix ms) stay out of the event tables (the retention window); 0: all.</summary>
    public long EventsSinceUnixMs { get; init; }
}

/// <summary>One collector's item and the id of the collector that reported it: what one table row is made of.</summary>
internal readonly record struct Collected<T>(T Value, string CollectorId);

/// <summary>The <c>snapshots</c> row of one process snapshot (its header, without the processes).</summary>
internal readonly record struct SnapshotRow(string CollectorId, ulong TakenUnixMs, string Reason, int ProcessCount, ulong ScanDurationUs)
{
    public static SnapshotRow Of(ProcessSnapshot snapshot) =>
        new(snapshot.CollectorId, snapshot.TakenUnixMs, snapshot.Reason, snapshot.Processes.Count, snapshot.ScanDurationUs);
}

/// <summary>Loading collector answers into the tables.</summary>
public sealed partial class SnapshotDatabase
{
    /// <summary>Every row in one transaction through prepared statements, then the indexes over the loaded rows.</summary>
    private static void Load(SqliteConnection connection, EvaluationData data, Dictionary<string, int> rows, out int duplicates)
    {
        using var transaction = connection.BeginTransaction();
        duplicates = LoadProcesses(connection, data.Processes, rows);
        LoadNetworks(connection, data.Networks, rows);
        LoadFiles(connection, data.Files, data.EventsSinceUnixMs, rows);
        WatchListTable.Load(connection, data.WatchLists);
        transaction.Commit();
        Execute(connection, Indexes);
    }

    internal static string Values(int count) => "VALUES (" + string.Join(',', Enumerable.Repeat("?", count)) + ")";

    private static int LoadProcesses(SqliteConnection connection, List<ProcessSnapshot> snapshots, Dictionary<string, int> rows)
    {
        // The primary key (pid, start time) keeps a process reported by several collectors once.
        using var process = new RowInserter(connection, "INSERT OR IGNORE INTO processes " + Values(ProcessColumns));
        using var snapshot = new RowInserter(connection, "INSERT INTO snapshots " + Values(SnapshotColumns));
        var inserted = 0;
        var duplicates = 0;
        foreach (var snap in snapshots)
        {
            Bind(snapshot, SnapshotRow.Of(snap)).Insert();
            foreach (var info in snap.Processes)
            {
                if (Bind(process, new Collected<ProcessInfo>(info, snap.CollectorId)).Insert())
                {
                    inserted++;
                }
                else
                {
                    duplicates++;
                }
            }
        }

        rows["processes"] = inserted;
        rows["snapshots"] = snapshots.Count;
        return duplicates;
    }

    private static void LoadNetworks(SqliteConnection connection, List<NetworkSnapshot> snapshots, Dictionary<string, int> rows)
    {
        using var connections = new RowInserter(connection, "INSERT INTO connections " + Values(ConnectionColumns));
        using var listeners = new RowInserter(connection, "INSERT INTO listening_ports " + Values(ListenerColumns));
        int c = 0, l = 0;
        foreach (var snap in snapshots)
        {
            foreach (var x in snap.Connections)
            {
                Bind(connections, new Collected<Connection>(x, snap.CollectorId)).Insert();
                c++;
            }

            foreach (var x in snap.Listeners)
            {
                Bind(listeners, new Collected<Listener>(x, snap.CollectorId)).Insert();
                l++;
            }
        }

        rows["connections"] = c;
        rows["listening_ports"] = l;
    }

    private static void LoadFiles(SqliteConnection connection, List<FileSnapshot> snapshots, long sinceUnixMs, Dictionary<string, int> rows)
    {
        using var events = new RowInserter(connection, "INSERT INTO file_events " + Values(FileEventColumns));
        using var hashes = new RowInserter(connection, "INSERT INTO file_hashes " + Values(FileHashColumns));
        int e = 0, h = 0;
        foreach (var snap in snapshots)
        {
            foreach (var x in snap.Events)
            {
                if (TimeUnixMs(x) < sinceUnixMs)
                {
                    continue;
                }

                Bind(events, new Collected<FileEvent>(x, EventCollectorId(x, snap))).Insert();
                e++;
            }

            foreach (var x in snap.Hashes)
            {
                Bind(hashes, new Collected<FileHash>(x, snap.CollectorId)).Insert();
                h++;
            }
        }

        rows["file_events"] = e;
        rows["file_hashes"] = h;
    }

    // Each table's row, bound in column order (Tables) by both the full load and the resident tables'
    // INSERT and UPDATE (SnapshotTables), so both write the same values.
    internal const int ProcessColumns = 22;
    internal const int SnapshotColumns = 5;
    internal const int ConnectionColumns = 18;
    internal const int ListenerColumns = 14;
    internal const int FileEventColumns = 17;
    internal const int FileHashColumns = 7;

    internal static RowInserter Bind(RowInserter row, Collected<ProcessInfo> process)
    {
        var info = process.Value;
        return row
            .Integer(info.Pid).Integer(info.Ppid).Text(info.Name).Text(info.Comm).Text(info.Executable).Text(string.Join(' ', info.CommandLine))
            .Integer(info.Uid).Text(info.User).Integer((long)info.StartTimeUnixMs).Real(info.CpuPercent).Integer((long)info.RssBytes).Integer(info.Threads)
            .Text(info.ExeSha256).Flag(info.ExeDeleted).Text(process.CollectorId).Integer(info.Euid).Text(info.Stdin).Text(info.Stdout).Text(info.Stderr)
            .Integer(SocketInode(info.Stdin)).Integer(SocketInode(info.Stdout)).Integer(SocketInode(info.Stderr));
    }

    internal static RowInserter Bind(RowInserter row, SnapshotRow snapshot) =>
        row.Text(snapshot.CollectorId).Integer((long)snapshot.TakenUnixMs).Text(snapshot.Reason).Integer(snapshot.ProcessCount).Integer((long)snapshot.ScanDurationUs);

    internal static RowInserter Bind(RowInserter row, Collected<Connection> connection)
    {
        var x = connection.Value;
        var o = x.Owner ?? new SocketOwner();
        return row
            .Text(Name(x.Transport)).Text(Name(x.Family)).Text(x.Local?.Address ?? string.Empty).Integer(x.Local?.Port ?? 0)
            .Text(x.Remote?.Address ?? string.Empty).Integer(x.Remote?.Port ?? 0).Text(Name(x.Direction)).Text(x.State).Integer((long)x.Inode)
            .Integer(o.Attributed ? o.Pid : null).Text(o.Name).Text(o.Executable).Integer(o.Uid).Text(o.User)
            .Integer((long)x.FirstSeenUnixMs).Integer((long)x.BytesSent).Integer((long)x.BytesReceived).Text(connection.CollectorId);
    }

    internal static RowInserter Bind(RowInserter row, Collected<Listener> listener)
    {
        var x = listener.Value;
        var o = x.Owner ?? new SocketOwner();
        return row
            .Text(Name(x.Transport)).Text(Name(x.Family)).Text(x.Local?.Address ?? string.Empty).Integer(x.Local?.Port ?? 0).Text(Name(x.Scope))
            .Flag(x.Exposed).Integer((long)x.Inode).Integer(o.Attributed ? o.Pid : null).Text(o.Name).Text(o.Executable).Integer(o.Uid).Text(o.User)
            .Integer((long)x.FirstSeenUnixMs).Text(listener.CollectorId);
    }

    internal static RowInserter Bind(RowInserter row, Collected<FileEvent> fileEvent)
    {
        var x = fileEvent.Value;
        var a = x.Actor ?? new Actor();
        return row
            .Text(Name(x.Kind)).Text(x.Path).Text(x.NewPath).Flag(x.IsDirectory).Integer(a.Pid == 0 ? null : a.Pid).Text(a.Executable).Text(a.Comm)
            .Integer(a.Uid).Text(a.User).Text(Name(a.Attribution)).Integer(TimeUnixMs(x)).Integer(x.Mode).Integer((long)x.Size).Flag(x.Executable).Text(x.Source)
            .Integer((long)x.Sequence).Text(fileEvent.CollectorId);
    }

    internal static RowInserter Bind(RowInserter row, Collected<FileHash> hash)
    {
        var x = hash.Value;
        return row
            .Text(x.Path).Text(x.Sha256).Integer((long)x.Size).Integer((long)(x.MtimeUnixNanos / 1_000_000)).Integer((long)x.HashedUnixMs).Text(x.Problem)
            .Text(hash.CollectorId);
    }

    // Whether two rows bind the same columns, for the resident tables (ResidentTable): each compares
    // exactly what the Bind above it writes, field by field, so a message field no column holds (a
    // connection's rtt, a process's missing fields) makes no update. ResidentSnapshotTableTests change
    // every field of every row message in turn and hold each to "updated exactly when a column changed".
    internal static bool SameColumns(Collected<ProcessInfo> a, Collected<ProcessInfo> b)
    {
        var x = a.Value;
        var y = b.Value;
        return x.Pid == y.Pid && x.Ppid == y.Ppid && x.StartTimeUnixMs == y.StartTimeUnixMs && x.Uid == y.Uid && x.Euid == y.Euid
            && x.RssBytes == y.RssBytes && x.Threads == y.Threads && x.ExeDeleted == y.ExeDeleted
            && BitConverter.DoubleToInt64Bits(x.CpuPercent) == BitConverter.DoubleToInt64Bits(y.CpuPercent)
            && Same(x.Name, y.Name) && Same(x.Comm, y.Comm) && Same(x.Executable, y.Executable) && Same(x.User, y.User) && Same(x.ExeSha256, y.ExeSha256)
            && Same(x.Stdin, y.Stdin) && Same(x.Stdout, y.Stdout) && Same(x.Stderr, y.Stderr) && Same(a.CollectorId, b.CollectorId)
            && x.CommandLine.Equals(y.CommandLine);
    }

    internal static bool SameColumns(Collected<Connection> a, Collected<Connection> b)
    {
        var x = a.Value;
        var y = b.Value;
        return x.Inode == y.Inode && x.FirstSeenUnixMs == y.FirstSeenUnixMs && x.BytesSent == y.BytesSent && x.BytesReceived == y.BytesReceived
            && x.Transport == y.Transport && x.Family == y.Family && x.Direction == y.Direction && Same(x.State, y.State)
            && SameEndpoint(x.Local, y.Local) && SameEndpoint(x.Remote, y.Remote) && SameOwner(x.Owner, y.Owner) && Same(a.CollectorId, b.CollectorId);
    }

    internal static bool SameColumns(Collected<Listener> a, Collected<Listener> b)
    {
        var x = a.Value;
        var y = b.Value;
        return x.Inode == y.Inode && x.FirstSeenUnixMs == y.FirstSeenUnixMs && x.Exposed == y.Exposed
            && x.Transport == y.Transport && x.Family == y.Family && x.Scope == y.Scope
            && SameEndpoint(x.Local, y.Local) && SameOwner(x.Owner, y.Owner) && Same(a.CollectorId, b.CollectorId);
    }

    internal static bool SameColumns(Collected<FileEvent> a, Collected<FileEvent> b)
    {
        var x = a.Value;
        var y = b.Value;
        var p = x.Actor ?? NoActor;
        var q = y.Actor ?? NoActor;
        return x.Sequence == y.Sequence && TimeUnixMs(x) == TimeUnixMs(y) && x.Kind == y.Kind && x.IsDirectory == y.IsDirectory
            && x.Mode == y.Mode && x.Size == y.Size && x.Executable == y.Executable
            && Same(x.Path, y.Path) && Same(x.NewPath, y.NewPath) && Same(x.Source, y.Source) && Same(a.CollectorId, b.CollectorId)
            && p.Pid == q.Pid && p.Uid == q.Uid && p.Attribution == q.Attribution
            && Same(p.Executable, q.Executable) && Same(p.Comm, q.Comm) && Same(p.User, q.User);
    }

    internal static bool SameColumns(Collected<FileHash> a, Collected<FileHash> b)
    {
        var x = a.Value;
        var y = b.Value;
        return x.Size == y.Size && x.MtimeUnixNanos / 1_000_000 == y.MtimeUnixNanos / 1_000_000 && x.HashedUnixMs == y.HashedUnixMs
            && Same(x.Path, y.Path) && Same(x.Sha256, y.Sha256) && Same(x.Problem, y.Problem) && Same(a.CollectorId, b.CollectorId);
    }

    private static readonly SocketOwner NoOwner = new();
    private static readonly Actor NoActor = new();

    private static bool Same(string x, string y) => string.Equals(x, y, StringComparison.Ordinal);

    // As bound: an absent endpoint is ("", 0).
    private static bool SameEndpoint(Endpoint? x, Endpoint? y) =>
        Same(x?.Address ?? string.Empty, y?.Address ?? string.Empty) && (x?.Port ?? 0) == (y?.Port ?? 0);

    // As bound: an absent owner is an empty one, and the pid is a column only when attributed.
    private static bool SameOwner(SocketOwner? x, SocketOwner? y)
    {
        var p = x ?? NoOwner;
        var q = y ?? NoOwner;
        return p.Attributed == q.Attributed && (!p.Attributed || p.Pid == q.Pid) && p.Uid == q.Uid
            && Same(p.Name, q.Name) && Same(p.Executable, q.Executable) && Same(p.User, q.User);
    }

    /// <summary>A file event's time in the table (Unix ms): what the retention window is compared with.</summary>
    internal static long TimeUnixMs(FileEvent x) => (long)(x.TimeUnixNanos / 1_000_000);

    /// <summary>The collector a file event names, else the one whose snapshot carried it.</summary>
    internal static string EventCollectorId(FileEvent x, FileSnapshot snapshot) => x.CollectorId.Length > 0 ? x.CollectorId : snapshot.CollectorId;

    /// <summary>The inode of "socket:[N]", else null.</summary>
    internal static long? SocketInode(string link) =>
        link.StartsWith("socket:[", StringComparison.Ordinal) && link.EndsWith(']')
        && long.TryParse(link.AsSpan(8, link.Length - 9), NumberStyles.None, CultureInfo.InvariantCulture, out var inode) ? inode : null;

    /// <summary>A protobuf enum value as the tables spell it: the value's name after the type prefix, lower case with underscores.</summary>
    internal static string Name<T>(T value)
        where T : struct, Enum => EnumNames<T>.Of(value);

    /// <summary>The spelling of every declared value of <typeparamref name="T"/>, made once (a value not declared is spelled each time).</summary>
    private static class EnumNames<T>
        where T : struct, Enum
    {
        private static readonly FrozenDictionary<T, string> Declared = Enum.GetValues<T>().Distinct().ToFrozenDictionary(v => v, Spell);

        public static string Of(T value) => Declared.TryGetValue(value, out var name) ? name : Spell(value);

        private static string Spell(T value)
        {
            var text = value.ToString();
            var builder = new System.Text.StringBuilder(text.Length + 4);
            for (var i = 0; i < text.Length; i++)
            {
                if (char.IsUpper(text[i]) && i > 0 && !char.IsUpper(text[i - 1]))
                {
                    builder.Append('_');
                }

                builder.Append(char.ToLowerInvariant(text[i]));
            }

            return builder.ToString();
        }
    }
}
