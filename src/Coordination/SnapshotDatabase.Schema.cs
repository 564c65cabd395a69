namespace DaemonEye.Coordination;

/// <summary>The tables rules read, and which task type fills each.</summary>
public sealed partial class SnapshotDatabase
{
    /// <summary>Table → the task type whose answers fill it; tables not here are the agent's own (configuration).</summary>
    public static readonly IReadOnlyDictionary<string, string> TaskTypeOfTable = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
    {
        ["processes"] = ProcessSnapshotTaskType,
        ["snapshots"] = ProcessSnapshotTaskType,
        ["connections"] = NetworkSnapshotTaskType,
        ["listening_ports"] = NetworkSnapshotTaskType,
        ["file_events"] = FileSnapshotTaskType,
        ["file_hashes"] = FileSnapshotTaskType,
    };

    public const string ProcessSnapshotTaskType = "process.snapshot";
    public const string NetworkSnapshotTaskType = "network.snapshot";
    public const string FileSnapshotTaskType = "file.snapshot";

    /// <summary>Tables of events (the others hold state): loaded over the retention window only.</summary>
    public static readonly IReadOnlySet<string> EventTables = new HashSet<string>(StringComparer.OrdinalIgnoreCase) { "file_events" };

    /// <summary>
    /// Every table and index rules may read: the tables below, <c>watch_lists</c>
    /// (<see cref="WatchListTable"/>), then the indexes.
    /// </summary>
    public const string Schema = Tables + WatchListTable.Schema + Indexes;

    /// <summary>The collectors' tables, without their indexes: those are built once the rows are in (one sort per index instead of an index insert per row).</summary>
    internal const string Tables = """
        CREATE TABLE processes (
          pid INTEGER NOT NULL,
          ppid INTEGER NOT NULL,
          name TEXT NOT NULL,
          comm TEXT NOT NULL,
          executable TEXT NOT NULL,
          command_line TEXT NOT NULL,
          uid INTEGER NOT NULL,
          user TEXT NOT NULL,
          start_time_unix_ms INTEGER NOT NULL,
          cpu_percent REAL NOT NULL,
          rss_bytes INTEGER NOT NULL,
          threads INTEGER NOT NULL,
          exe_sha256 TEXT NOT NULL,
          exe_deleted INTEGER NOT NULL,
          collector_id TEXT NOT NULL,
          euid INTEGER NOT NULL DEFAULT 0,
          stdin TEXT NOT NULL DEFAULT '',
          stdout TEXT NOT NULL DEFAULT '',
          stderr TEXT NOT NULL DEFAULT '',
          stdin_socket INTEGER,
          stdout_socket INTEGER,
          stderr_socket INTEGER,
          PRIMARY KEY (pid, start_time_unix_ms)
        );
        CREATE TABLE snapshots (
          collector_id TEXT NOT NULL,
          taken_unix_ms INTEGER NOT NULL,
          reason TEXT NOT NULL,
          process_count INTEGER NOT NULL,
          scan_duration_us INTEGER NOT NULL
        );
        CREATE TABLE connections (
          transport TEXT NOT NULL,
          family TEXT NOT NULL,
          local_address TEXT NOT NULL,
          local_port INTEGER NOT NULL,
          remote_address TEXT NOT NULL,
          remote_port INTEGER NOT NULL,
          direction TEXT NOT NULL,
          state TEXT NOT NULL,
          inode INTEGER NOT NULL,
          pid INTEGER,
          process_name TEXT NOT NULL,
          executable TEXT NOT NULL,
          uid INTEGER NOT NULL,
          user TEXT NOT NULL,
          first_seen_unix_ms INTEGER NOT NULL,
          bytes_sent INTEGER NOT NULL,
          bytes_received INTEGER NOT NULL,
          collector_id TEXT NOT NULL
        );
        CREATE TABLE listening_ports (
          transport TEXT NOT NULL,
          family TEXT NOT NULL,
          address TEXT NOT NULL,
          port INTEGER NOT NULL,
          scope TEXT NOT NULL,
          exposed INTEGER NOT NULL,
          inode INTEGER NOT NULL,
          pid INTEGER,
          process_name TEXT NOT NULL,
          executable TEXT NOT NULL,
          uid INTEGER NOT NULL,
          user TEXT NOT NULL,
          first_seen_unix_ms INTEGER NOT NULL,
          collector_id TEXT NOT NULL
        );
        CREATE TABLE file_events (
          kind TEXT NOT NULL,
          path TEXT NOT NULL,
          new_path TEXT NOT NULL,
          is_directory INTEGER NOT NULL,
          pid INTEGER,
          process_executable TEXT NOT NULL,
          process_comm TEXT NOT NULL,
          uid INTEGER NOT NULL,
          user TEXT NOT NULL,
          attribution TEXT NOT NULL,
          time_unix_ms INTEGER NOT NULL,
          mode INTEGER NOT NULL,
          size INTEGER NOT NULL,
          executable INTEGER NOT NULL,
          source TEXT NOT NULL,
          sequence INTEGER NOT NULL,
          collector_id TEXT NOT NULL
        );
        CREATE TABLE file_hashes (
          path TEXT NOT NULL,
          sha256 TEXT NOT NULL,
          size INTEGER NOT NULL,
          mtime_unix_ms INTEGER NOT NULL,
          hashed_unix_ms INTEGER NOT NULL,
          problem TEXT NOT NULL,
          collector_id TEXT NOT NULL
        );
        """;

    /// <summary>The indexes of <see cref="Tables"/>: the columns rules join and look up by.</summary>
    internal const string Indexes = """

        CREATE INDEX processes_name ON processes(name);
        CREATE INDEX processes_ppid ON processes(ppid);
        CREATE INDEX processes_executable ON processes(executable);
        CREATE INDEX connections_inode ON connections(inode);
        CREATE INDEX connections_pid ON connections(pid);
        CREATE INDEX listening_ports_pid ON listening_ports(pid);
        CREATE INDEX file_events_path ON file_events(path);
        CREATE INDEX file_events_new_path ON file_events(new_path);
        """;
}
