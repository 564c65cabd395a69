using DaemonEye.Coordination;
using DaemonEye.Protocol.Filesystem.V1;
using DaemonEye.Protocol.Network.V1;
using DaemonEye.Protocol.Process.V1;

namespace DaemonEye.Server.Tests;

/// <summary>
/// The shipped snapshot rules that read a watch list through the <c>watch_lists</c> prefix range
/// (<see cref="WatchListTable"/>) return exactly the rows, in the same order, of their plain form: the
/// same rule testing every row against every pattern. Over real SQLite in memory, with data full of
/// near misses (a prefix with more after it, a wildcard or a bracket first, non-ASCII, U+10FFFF, a NUL
/// in a path) and watch lists whose patterns start with a wildcard.
/// </summary>
public sealed class ShippedSnapshotRuleTests
{
    /// <summary>Each rule's meaning: the form it had before the prefix ranges.</summary>
    public static TheoryData<string, string> PlainForms => new()
    {
        {
            "sensitive-file-changed", """
            SELECT f.path, f.new_path, f.kind, f.pid, f.process_executable, f.process_comm, f.user, f.time_unix_ms
            FROM file_events f
            WHERE EXISTS (SELECT 1 FROM watch_lists w
                          WHERE w.list = 'sensitive_files' AND (f.path GLOB w.pattern OR f.new_path GLOB w.pattern))
            """
        },
        {
            "system-binary-modified", """
            SELECT f.path, f.new_path, f.kind, f.pid, f.process_executable, f.process_comm, f.user, f.time_unix_ms
            FROM file_events f
            WHERE NOT f.is_directory
              AND EXISTS (SELECT 1 FROM watch_lists b
                          WHERE b.list = 'system_binaries' AND (f.path GLOB b.pattern OR f.new_path GLOB b.pattern))
              AND NOT EXISTS (SELECT 1 FROM watch_lists m
                              WHERE m.list = 'package_managers' AND f.process_executable GLOB m.pattern)
            """
        },
        {
            "executable-dropped-and-run", """
            SELECT p.pid, p.name, p.executable, p.user, p.command_line,
                   f.kind AS file_event, f.pid AS writer_pid, f.process_executable AS writer
            FROM processes p
            CROSS JOIN file_events f
            WHERE EXISTS (SELECT 1 FROM watch_lists v
                          WHERE v.list = 'volatile_directories' AND p.executable GLOB v.pattern)
              AND (f.path = p.executable OR f.new_path = p.executable)
              AND f.kind IN ('created', 'modified', 'moved')
            """
        },
        {
            "reverse-shell", """
            SELECT p.pid, p.ppid, p.name, p.executable, p.user, p.command_line,
                   c.local_address, c.local_port, c.remote_address, c.remote_port
            FROM processes p
            CROSS JOIN connections c
            WHERE EXISTS (SELECT 1 FROM watch_lists s WHERE s.list = 'shells' AND p.name GLOB s.pattern)
              AND c.inode IN (p.stdin_socket, p.stdout_socket, p.stderr_socket)
              AND +c.transport = 'tcp' AND +c.state = 'ESTABLISHED'
            """
        },
    };

    private static readonly Dictionary<string, IReadOnlyList<string>> WatchLists = new(StringComparer.Ordinal)
    {
        ["sensitive_files"] = ["/etc/passwd", "/etc/sudoers", "/etc/sudoers.d/*", "/home/*/.ssh/authorized_keys", "*/id_rsa", "/etc/pass?d", "/é[ab]x"],
        ["system_binaries"] = ["/usr/bin/*", "/usr/[ls]bin/*", "/bin/*"],
        ["package_managers"] = ["/usr/bin/dpkg", "/usr/bin/apt*"],
        ["volatile_directories"] = ["/tmp/*", "/dev/shm/*", "?ar/tmp/*"],
        ["shells"] = ["bash", "sh", "*zsh", "busy[b]ox"],
    };

    private static readonly string[] Paths =
    [
        "/etc/passwd", "/etc/passwdx", "/etc/passwd\0x", "/etc/passwd\U0010FFFF", "/etc/pass\U0010FFFFd", "/etc/pasSwd", "/etc/pas", "/etc/sudoers",
        "/etc/sudoers.d/", "/etc/sudoers.d/a", "/home/bob/.ssh/authorized_keys", "/home/bob/x/.ssh/authorized_keys", "/root/.ssh/id_rsa", "id_rsa",
        "/éax", "/ébx", "/écx", "/é", "/usr/bin/ls", "/usr/bin", "/usr/lbin/x", "/usr/sbin/x", "/usr/xbin/x", "/bin/sh", "/binx/sh", "/bin/",
        "/tmp/x", "/tmp/", "/tmpx/y", "/tmp/a/b", "/dev/shm/x", "/var/tmp/x", "/vat/tmp/x", "/\U0010FFFF", string.Empty,
    ];

    private static readonly string[] Names = ["bash", "bashx", "sh", "ash", "zsh", "xzsh", "busybox", "busyb0x", "python3", string.Empty, "\U0010FFFFsh"];

    [Theory]
    [MemberData(nameof(PlainForms))]
    public void A_rule_read_through_prefix_ranges_returns_exactly_the_rows_of_its_plain_form(string id, string plain)
    {
        var (rules, problems) = RuleLoader.LoadDirectory(Path.Combine(RepositoryRoot(), "config", "rules"));
        Assert.Empty(problems);
        var shipped = rules.Single(r => r.Id == id);
        Assert.Contains("prefix_end", shipped.Sql, StringComparison.Ordinal);
        using var database = SnapshotDatabase.Create(Data(seed: 18));

        var expected = database.Evaluate(plain, TimeSpan.FromSeconds(10), TimeProvider.System);
        var actual = database.Evaluate(shipped.Sql, TimeSpan.FromSeconds(10), TimeProvider.System);

        Assert.Null(expected.Error);
        Assert.Null(actual.Error);
        Assert.Equal(expected.Columns, actual.Columns);
        Assert.True(expected.TotalRows >= 10, $"{id}: the data should make the rule match ({expected.TotalRows} rows)");
        Assert.Equal(expected.TotalRows, actual.TotalRows);
        Assert.Equal(expected.Rows, actual.Rows);
    }

    [Theory]
    [InlineData("/etc/passwd", "/etc/passwd")]
    [InlineData("/etc/sudoers.d/*", "/etc/sudoers.d/")]
    [InlineData("/home/*/.ssh/authorized_keys", "/home/")]
    [InlineData("/etc/pass?d", "/etc/pass")]
    [InlineData("/usr/[ls]bin/*", "/usr/")]
    [InlineData("*zsh", "")]
    [InlineData("/a\0b*", "/a")]
    public void A_pattern_prefix_is_its_text_before_the_first_wildcard(string pattern, string prefix) =>
        Assert.Equal(prefix, WatchListTable.Prefix(pattern));

    [Fact]
    public void Every_text_that_starts_with_a_prefix_sorts_inside_its_range()
    {
        using var database = SnapshotDatabase.Create(Data(seed: 1));
        var outside = database.Evaluate(
            """
            SELECT w.pattern, f.path FROM watch_lists w CROSS JOIN file_events f
            WHERE substr(f.path, 1, length(w.prefix)) = w.prefix AND NOT (f.path >= w.prefix AND f.path < w.prefix_end)
            """,
            TimeSpan.FromSeconds(10),
            TimeProvider.System);
        Assert.Null(outside.Error);
        Assert.Equal(0, outside.TotalRows);
    }

    /// <summary>Processes, connections and file events drawn from the near-miss pools; some processes' stdin is a socket of a connection, some file events write a process's executable.</summary>
    private static EvaluationData Data(int seed)
    {
        var random = new Random(seed);
        T Pick<T>(IReadOnlyList<T> from) => from[random.Next(from.Count)];
        var data = new EvaluationData { WatchLists = WatchLists };
        var processes = new ProcessSnapshot { CollectorId = "procmond", TakenUnixMs = 1, Reason = "task" };
        for (var i = 0; i < 400; i++)
        {
            var name = Pick(Names);
            processes.Processes.Add(new ProcessInfo
            {
                Pid = (uint)(i + 2),
                Ppid = 1,
                Name = name,
                Comm = name,
                Executable = Pick(Paths),
                CommandLine = { name, i.ToString(System.Globalization.CultureInfo.InvariantCulture) },
                User = "user",
                StartTimeUnixMs = (ulong)(1_000 + i),
                Stdin = random.Next(3) == 0 ? $"socket:[{1000 + random.Next(300)}]" : "/dev/pts/0",
                Stdout = random.Next(5) == 0 ? $"socket:[{1000 + random.Next(300)}]" : "pipe:[7]",
                Stderr = "pipe:[7]",
            });
        }

        data.Processes.Add(processes);
        var network = new NetworkSnapshot { CollectorId = "netmond", TakenUnixMs = 1 };
        for (var i = 0; i < 300; i++)
        {
            network.Connections.Add(new Connection
            {
                Transport = random.Next(4) == 0 ? Transport.Udp : Transport.Tcp,
                Family = IpFamily.Ipv4,
                State = random.Next(4) == 0 ? "LISTEN" : "ESTABLISHED",
                Inode = (ulong)(1000 + i),
                Local = new Endpoint { Address = "10.0.0.1", Port = (uint)(30000 + i) },
                Remote = new Endpoint { Address = "10.0.0.2", Port = 443 },
                Owner = new SocketOwner { Attributed = true, Pid = (uint)(2 + random.Next(400)), Name = "x" },
            });
        }

        data.Networks.Add(network);
        var files = new FileSnapshot { CollectorId = "fsmond", TakenUnixMs = 1 };
        string[] writers = ["/usr/bin/dpkg", "/usr/bin/apt-get", "/usr/bin/cp", "/tmp/dpkg"];
        for (var i = 0; i < 3000; i++)
        {
            var kind = (FileEventKind)(1 + random.Next(5));
            files.Events.Add(new FileEvent
            {
                Kind = kind,
                Path = Pick(Paths),
                NewPath = kind == FileEventKind.Moved || random.Next(10) == 0 ? Pick(Paths) : string.Empty,
                IsDirectory = random.Next(8) == 0,
                Actor = new Actor { Pid = (uint)(2 + random.Next(400)), Executable = Pick(writers), Attribution = Attribution.Known },
                TimeUnixNanos = (ulong)(1_000_000 + i) * 1_000_000,
                Sequence = (ulong)i,
                Source = "fanotify",
            });
        }

        data.Files.Add(files);
        return data;
    }

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
}
