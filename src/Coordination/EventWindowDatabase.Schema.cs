namespace DaemonEye.Coordination;

/// <summary>The event tables event rules read, and the topics that fill them.</summary>
public sealed partial class EventWindowDatabase
{
    public const string ProcessEvents = "process_events";
    public const string ConnectionEvents = "connection_events";
    public const string FilesystemEvents = "filesystem_events";

    /// <summary>The event tables, in the order <see cref="EventWindowsOptions.All"/> lists them.</summary>
    public static readonly IReadOnlyList<string> Tables = [ProcessEvents, ConnectionEvents, FilesystemEvents];

    /// <summary>
    /// Every column of every event table: <c>seq</c> is the agent's arrival order (one counter across
    /// the tables), <c>time_unix_ms</c> the collector's time of the event, <c>arrived_unix_ms</c> the
    /// agent's when it took it in (retention by age reads this one).
    /// </summary>
    public const string Schema = EventTables + WatchListTable.Schema;

    private const string EventTables = """
        CREATE TABLE process_events (
          seq INTEGER PRIMARY KEY,
          kind TEXT NOT NULL,
          pid INTEGER NOT NULL,
          ppid INTEGER NOT NULL,
          name TEXT NOT NULL,
          comm TEXT NOT NULL,
          executable TEXT NOT NULL,
          command_line TEXT NOT NULL,
          uid INTEGER NOT NULL,
          euid INTEGER NOT NULL,
          user TEXT NOT NULL,
          start_time_unix_ms INTEGER NOT NULL,
          exe_sha256 TEXT NOT NULL,
          exe_deleted INTEGER NOT NULL,
          stdin TEXT NOT NULL,
          stdout TEXT NOT NULL,
          stderr TEXT NOT NULL,
          stdin_socket INTEGER,
          stdout_socket INTEGER,
          stderr_socket INTEGER,
          exit_code INTEGER,
          exit_signal INTEGER,
          time_unix_ms INTEGER NOT NULL,
          arrived_unix_ms INTEGER NOT NULL,
          collector_id TEXT NOT NULL
        );
        CREATE INDEX process_events_pid ON process_events(pid);
        CREATE INDEX process_events_executable ON process_events(executable);
        CREATE INDEX process_events_stdin_socket ON process_events(stdin_socket);
        CREATE TABLE connection_events (
          seq INTEGER PRIMARY KEY,
          kind TEXT NOT NULL,
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
          bytes_sent INTEGER NOT NULL,
          bytes_received INTEGER NOT NULL,
          time_unix_ms INTEGER NOT NULL,
          arrived_unix_ms INTEGER NOT NULL,
          collector_id TEXT NOT NULL
        );
        CREATE INDEX connection_events_inode ON connection_events(inode);
        CREATE INDEX connection_events_pid ON connection_events(pid);
        CREATE TABLE filesystem_events (
          seq INTEGER PRIMARY KEY,
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
          mode INTEGER NOT NULL,
          size INTEGER NOT NULL,
          executable INTEGER NOT NULL,
          time_unix_ms INTEGER NOT NULL,
          arrived_unix_ms INTEGER NOT NULL,
          collector_id TEXT NOT NULL
        );
        CREATE INDEX filesystem_events_path ON filesystem_events(path);
        CREATE INDEX filesystem_events_new_path ON filesystem_events(new_path);
        """;
}
