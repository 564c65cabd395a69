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

/// <summary>Loading collector answers into the tables.</summary>
public sealed partial class SnapshotDatabase
{
    private static void Load(SqliteConnection connection, EvaluationData data, Dictionary<string, int> rows, out int duplicates)
    {
        using var transaction = connection.BeginTransaction();
        duplicates = LoadProcesses(connection, transaction, data.Processes, rows);
        LoadNetworks(connection, transaction, data.Networks, rows);
        LoadFiles(connection, transaction, data.Files, data.EventsSinceUnixMs, rows);
        using (var list = new Inserter(connection, transaction, "INSERT INTO watch_lists VALUES ($1,$2)", 2))
        {
            foreach (var (name, patterns) in data.WatchLists)
            {
                foreach (var pattern in patterns)
                {
                    list.Run(name, pattern);
                }
            }
        }

        transaction.Commit();
    }

    private static int LoadProcesses(SqliteConnection connection, SqliteTransaction transaction, List<ProcessSnapshot> snapshots, Dictionary<string, int> rows)
    {
        using var process = new Inserter(connection, transaction, "INSERT OR IGNORE INTO processes VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22)", 22);
        using var snapshot = new Inserter(connection, transaction, "INSERT INTO snapshots VALUES ($1,$2,$3,$4,$5)", 5);
        var inserted = 0;
        var duplicates = 0;
        foreach (var snap in snapshots)
        {
            snapshot.Run(snap.CollectorId, (long)snap.TakenUnixMs, snap.Reason, snap.Processes.Count, (long)snap.ScanDurationUs);
            foreach (var info in snap.Processes)
            {
                var added = process.Run(
                    (long)info.Pid, (long)info.Ppid, info.Name, info.Comm, info.Executable, string.Join(' ', info.CommandLine), (long)info.Uid, info.User,
                    (long)info.StartTimeUnixMs, info.CpuPercent, (long)info.RssBytes, (long)info.Threads, info.ExeSha256, info.ExeDeleted ? 1 : 0, snap.CollectorId,
                    (long)info.Euid, info.Stdin, info.Stdout, info.Stderr, SocketInode(info.Stdin), SocketInode(info.Stdout), SocketInode(info.Stderr));
                if (added == 1)
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

    private static void LoadNetworks(SqliteConnection connection, SqliteTransaction transaction, List<NetworkSnapshot> snapshots, Dictionary<string, int> rows)
    {
        using var connections = new Inserter(connection, transaction, "INSERT INTO connections VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18)", 18);
        using var listeners = new Inserter(connection, transaction, "INSERT INTO listening_ports VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)", 14);
        int c = 0, l = 0;
        foreach (var snap in snapshots)
        {
            foreach (var x in snap.Connections)
            {
                var o = x.Owner ?? new SocketOwner();
                connections.Run(
                    Name(x.Transport), Name(x.Family), x.Local?.Address ?? string.Empty, (long)(x.Local?.Port ?? 0), x.Remote?.Address ?? string.Empty, (long)(x.Remote?.Port ?? 0),
                    Name(x.Direction), x.State, (long)x.Inode, o.Attributed ? (long)o.Pid : null, o.Name, o.Executable, (long)o.Uid, o.User,
                    (long)x.FirstSeenUnixMs, (long)x.BytesSent, (long)x.BytesReceived, snap.CollectorId);
                c++;
            }

            foreach (var x in snap.Listeners)
            {
                var o = x.Owner ?? new SocketOwner();
                listeners.Run(
                    Name(x.Transport), Name(x.Family), x.Local?.Address ?? string.Empty, (long)(x.Local?.Port ?? 0), Name(x.Scope), x.Exposed ? 1 : 0, (long)x.Inode,
                    o.Attributed ? (long)o.Pid : null, o.Name, o.Executable, (long)o.Uid, o.User, (long)x.FirstSeenUnixMs, snap.CollectorId);
                l++;
            }
        }

        rows["connections"] = c;
        rows["listening_ports"] = l;
    }

    private static void LoadFiles(SqliteConnection connection, SqliteTransaction transaction, List<FileSnapshot> snapshots, long sinceUnixMs, Dictionary<string, int> rows)
    {
        using var events = new Inserter(connection, transaction, "INSERT INTO file_events VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17)", 17);
        using var hashes = new Inserter(connection, transaction, "INSERT INTO file_hashes VALUES ($1,$2,$3,$4,$5,$6,$7)", 7);
        int e = 0, h = 0;
        foreach (var snap in snapshots)
        {
            foreach (var x in snap.Events)
            {
                var at = (long)(x.TimeUnixNanos / 1_000_000);
                if (at < sinceUnixMs)
                {
                    continue;
                }

                var a = x.Actor ?? new Actor();
                events.Run(
                    Name(x.Kind), x.Path, x.NewPath, x.IsDirectory ? 1 : 0, a.Pid == 0 ? null : (long)a.Pid, a.Executable, a.Comm, (long)a.Uid, a.User, Name(a.Attribution),
                    at, (long)x.Mode, (long)x.Size, x.Executable ? 1 : 0, x.Source, (long)x.Sequence, x.CollectorId.Length > 0 ? x.CollectorId : snap.CollectorId);
                e++;
            }

            foreach (var x in snap.Hashes)
            {
                hashes.Run(x.Path, x.Sha256, (long)x.Size, (long)(x.MtimeUnixNanos / 1_000_000), (long)x.HashedUnixMs, x.Problem, snap.CollectorId);
                h++;
            }
        }

        rows["file_events"] = e;
        rows["file_hashes"] = h;
    }

    /// <summary>The inode of "socket:[N]", else null.</summary>
    internal static long? SocketInode(string link) =>
        link.StartsWith("socket:[", StringComparison.Ordinal) && link.EndsWith(']')
        && long.TryParse(link.AsSpan(8, link.Length - 9), NumberStyles.None, CultureInfo.InvariantCulture, out var inode) ? inode : null;

    /// <summary>A protobuf enum value as the tables spell it: the value's name after the type prefix, lower case with underscores.</summary>
    internal static string Name<T>(T value)
        where T : struct, Enum
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

    /// <summary>One prepared INSERT with positional parameters $1..$n.</summary>
    private sealed class Inserter : IDisposable
    {
        private readonly SqliteCommand _command;
        private readonly SqliteParameter[] _parameters;

        public Inserter(SqliteConnection connection, SqliteTransaction transaction, string sql, int count)
        {
            _command = connection.CreateCommand();
            _command.Transaction = transaction;
            _command.CommandText = sql;
            _parameters = new SqliteParameter[count];
            for (var i = 0; i < count; i++)
            {
                _parameters[i] = _command.Parameters.Add(new SqliteParameter { ParameterName = "$" + (i + 1).ToString(CultureInfo.InvariantCulture) });
            }

            _command.Prepare();
        }

        public int Run(params object?[] values)
        {
            for (var i = 0; i < values.Length; i++)
            {
                _parameters[i].Value = values[i] ?? DBNull.Value;
            }

            return _command.ExecuteNonQuery();
        }

        public void Dispose() => _command.Dispose();
    }
}
