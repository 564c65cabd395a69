using DaemonEye.Coordination;
using DaemonEye.Protocol.Filesystem.V1;
using DaemonEye.Protocol.Network.V1;
using DaemonEye.Protocol.Process.V1;
using Microsoft.Extensions.Time.Testing;

namespace DaemonEye.Server.Tests;

/// <summary>
/// The event windows on real SQLite in memory, on a fake clock: retention by age and by row cap
/// (counted), read-only evaluation, the event rule format, and the shipped event rules
/// (config/rules, kind: event) over the events their scenarios produce and over look-alikes.
/// </summary>
public sealed class EventWindowTests : IDisposable
{
    private static readonly DateTimeOffset Start = new(2026, 12, 1, 12, 0, 0, TimeSpan.Zero);
    private readonly FakeTimeProvider _time = new(Start);
    private readonly EventWindowDatabase _windows;

    public EventWindowTests()
    {
        var options = new EventWindowsOptions
        {
            ProcessEvents = new EventWindowOptions { MaxAgeSeconds = 300, MaxRows = 3 },
            FilesystemEvents = new EventWindowOptions { MaxAgeSeconds = 60, MaxRows = 1000 },
        };
        _windows = new EventWindowDatabase(options, RulesOptions.DefaultWatchLists, _time);
    }

    public void Dispose() => _windows.Dispose();

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "DaemonEye.Orleans.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"no DaemonEye.Orleans.sln above {AppContext.BaseDirectory}");
    }

    private long Now => _time.GetUtcNow().ToUnixTimeMilliseconds();

    private static DetectionRule Shipped(string id)
    {
        var (rules, problems) = RuleLoader.LoadDirectory(Path.Combine(RepositoryRoot(), "config", "rules"));
        Assert.Empty(problems);
        var rule = rules.Single(r => r.Id == id);
        Assert.True(rule.IsEvent, $"{id} is an event rule");
        return rule;
    }

    private ProcessLifecycle Exec(uint pid, string name, string executable, string stdin = "/dev/pts/0", long atUnixMs = 0) => new()
    {
        Kind = ProcessLifecycleKind.Executed,
        Process = new ProcessInfo { Pid = pid, Ppid = 1, Name = name, Executable = executable, CommandLine = { executable }, Stdin = stdin, User = "root" },
        ObservedUnixMs = (ulong)(atUnixMs == 0 ? Now : atUnixMs),
        CollectorId = "procmond",
        Source = "connector",
    };

    private FileEvent Created(string path, uint writer = 4242) => new()
    {
        Kind = FileEventKind.Created,
        Path = path,
        Actor = new Actor { Pid = writer, Executable = "/usr/bin/cp", Attribution = Attribution.Known },
        TimeUnixNanos = (ulong)Now * 1_000_000,
        Executable = true,
        CollectorId = "fsmond",
    };

    private static ConnectionEvent Opened(ulong inode, uint port = 4444, Transport transport = Transport.Tcp) => new()
    {
        Kind = ConnectionEventKind.Opened,
        Connection = new Connection
        {
            Transport = transport,
            Family = IpFamily.Ipv4,
            Local = new Endpoint { Address = "127.0.0.1", Port = 50000 },
            Remote = new Endpoint { Address = "127.0.0.1", Port = port },
            State = "ESTABLISHED",
            Inode = inode,
        },
        ObservedUnixMs = 1,
        CollectorId = "netmond",
    };

    private void Round(params Action[] appends)
    {
        _windows.BeginRound();
        foreach (var append in appends)
        {
            append();
        }

        _windows.EndRound();
    }

    private RuleEvaluation Run(DetectionRule rule)
    {
        var result = _windows.Evaluate(rule.Sql, TimeSpan.FromSeconds(5), 100);
        Assert.Null(result.Error);
        return result;
    }

    private static string Field(RuleEvaluation result, int row, string column) => result.Rows[row][result.Columns.ToList().IndexOf(column)]!;

    [Fact]
    public void Rows_older_than_the_max_age_go_and_are_counted_as_aged_out()
    {
        Round(() => _windows.Append(Created("/tmp/a")), () => _windows.Append(Created("/tmp/b")));
        _time.Advance(TimeSpan.FromSeconds(40));
        Round(() => _windows.Append(Created("/tmp/c")));
        _time.Advance(TimeSpan.FromSeconds(30));
        _windows.Prune();

        var files = _windows.Stats().Single(s => s.Table == EventWindowDatabase.FilesystemEvents);
        Assert.Equal((1, 3L, 2L, 0L), (files.Rows, files.Appended, files.AgedOut, files.Overflowed));
        var left = _windows.Evaluate("SELECT path FROM filesystem_events", TimeSpan.FromSeconds(5), 100);
        Assert.Equal("/tmp/c", Assert.Single(left.Rows)[0]);
    }

    [Fact]
    public void Past_the_row_cap_the_oldest_rows_go_and_are_counted_as_overflowed()
    {
        Round([.. Enumerable.Range(1, 5).Select(i => (Action)(() => _windows.Append(Exec((uint)i, "sleep", "/usr/bin/sleep"))))]);

        var processes = _windows.Stats().Single(s => s.Table == EventWindowDatabase.ProcessEvents);
        Assert.Equal((3, 5L, 0L, 2L), (processes.Rows, processes.Appended, processes.AgedOut, processes.Overflowed));
        var left = _windows.Evaluate("SELECT pid FROM process_events ORDER BY seq", TimeSpan.FromSeconds(5), 100);
        Assert.Equal(["3", "4", "5"], left.Rows.Select(r => r[0]));
    }

    [Fact]
    public void An_event_rule_reads_only_and_its_tables_come_from_sqlite()
    {
        Round(() => _windows.Append(Exec(7, "bash", "/usr/bin/bash")));

        Assert.Contains("is not read-only", EventWindowDatabase.Check("DELETE FROM process_events"));
        Assert.Contains("no such table: processes", EventWindowDatabase.Check("SELECT pid FROM processes"));
        Assert.Equal(["connection_events", "process_events", "watch_lists"], EventWindowDatabase.TablesRead(Shipped("shell-stdin-tcp").Sql));

        // After an evaluation the windows take rows again (read-only only while a rule runs).
        Run(Shipped("shell-stdin-tcp"));
        Round(() => _windows.Append(Exec(8, "bash", "/usr/bin/bash")));
        Assert.Equal(2, _windows.Rows(EventWindowDatabase.ProcessEvents));
    }

    [Fact]
    public void The_rule_format_marks_event_rules_and_checks_their_sql_against_the_windows()
    {
        var (rules, problems) = RuleLoader.Parse("e.yaml", "id: e\nname: E\nseverity: low\nkind: event\nsql: SELECT pid FROM process_events\n");
        Assert.Empty(problems);
        Assert.Equal(RuleFiles.EventKind, Assert.Single(rules).Kind);

        (_, problems) = RuleLoader.Parse("s.yaml", "id: s\nname: S\nseverity: low\nkind: event\nsql: SELECT pid FROM processes\n");
        Assert.Contains("no such table: processes", Assert.Single(problems).Message);

        (_, problems) = RuleLoader.Parse("k.yaml", "id: k\nname: K\nseverity: low\nkind: stream\nsql: SELECT pid FROM processes\n");
        var problem = Assert.Single(problems);
        Assert.Equal(4, problem.Line);
        Assert.Contains("kind 'stream' is invalid; allowed: snapshot, event", problem.Message);

        (rules, _) = RuleLoader.Parse("d.yaml", "id: d\nname: D\nseverity: low\nsql: SELECT pid FROM processes\n");
        Assert.Equal(RuleFiles.SnapshotKind, Assert.Single(rules).Kind);
    }

    [Fact]
    public void A_file_created_in_a_volatile_directory_and_executed_within_60_s_fires_with_the_process_and_its_writer()
    {
        var rule = Shipped("volatile-file-executed");
        Round(() => _windows.Append(Created("/tmp/dropper", writer: 100)));
        _time.Advance(TimeSpan.FromSeconds(5));
        Round(() => _windows.Append(Exec(200, "dropper", "/tmp/dropper")));

        var result = Run(rule);

        Assert.Single(result.Rows);
        Assert.Equal(("200", "/tmp/dropper", "100", "created"), (Field(result, 0, "pid"), Field(result, 0, "executable"), Field(result, 0, "writer_pid"), Field(result, 0, "file_event")));
    }

    [Fact]
    public void The_volatile_file_rule_is_quiet_after_60_s_outside_volatile_directories_and_for_files_never_written()
    {
        var rule = Shipped("volatile-file-executed");
        Round(() => _windows.Append(Created("/tmp/late")), () => _windows.Append(Created("/opt/tool")));
        _time.Advance(TimeSpan.FromSeconds(59));
        Round(() => _windows.Append(Exec(300, "late", "/tmp/late", atUnixMs: Now + 2_000)), () => _windows.Append(Exec(301, "tool", "/opt/tool")), () => _windows.Append(Exec(302, "other", "/tmp/other")));

        Assert.Empty(Run(rule).Rows);
    }

    [Fact]
    public void A_shell_whose_stdin_is_an_opened_tcp_connection_fires_whichever_event_arrives_last()
    {
        var rule = Shipped("shell-stdin-tcp");
        Round(() => _windows.Append(Exec(400, "bash", "/usr/bin/bash", stdin: "socket:[9001]")));
        Assert.Empty(Run(rule).Rows);

        Round(() => _windows.Append(Opened(9001, port: 4444)));
        var result = Run(rule);

        Assert.Single(result.Rows);
        Assert.Equal(("400", "bash", "4444", "socket:[9001]"), (Field(result, 0, "pid"), Field(result, 0, "name"), Field(result, 0, "remote_port"), Field(result, 0, "stdin")));
    }

    [Fact]
    public void The_shell_rule_is_quiet_for_a_unix_socket_a_udp_socket_and_a_program_that_is_not_a_shell()
    {
        var rule = Shipped("shell-stdin-tcp");
        Round(
            () => _windows.Append(Exec(500, "bash", "/usr/bin/bash", stdin: "socket:[7000]")),
            () => _windows.Append(Exec(501, "bash", "/usr/bin/bash", stdin: "socket:[7001]")),
            () => _windows.Append(Opened(7001, transport: Transport.Udp)),
            () => _windows.Append(Exec(502, "nc", "/usr/bin/nc", stdin: "socket:[7002]")),
            () => _windows.Append(Opened(7002)));

        Assert.Empty(Run(rule).Rows);
    }
}
