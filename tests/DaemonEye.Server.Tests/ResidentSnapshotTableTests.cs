using System.Globalization;
using DaemonEye.Coordination;
using DaemonEye.Protocol.Filesystem.V1;
using DaemonEye.Protocol.Network.V1;
using DaemonEye.Protocol.Process.V1;

namespace DaemonEye.Server.Tests;

/// <summary>
/// The resident tables (<see cref="SnapshotDatabase.CreateResident"/>), updated with what changed
/// between evaluations, hold exactly what a fresh full load of the same data holds: after each of a
/// sequence of snapshots with processes, connections, listeners, file events and hashes added,
/// changed and removed (duplicate processes from a second procmond, repeated socket identities, a
/// collector missing for one evaluation, the retention window moving, the watch lists changing), every
/// table and every shipped snapshot rule reads the same rows from both. Real SQLite, the shipped rules.
/// </summary>
public sealed class ResidentSnapshotTableTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);

    private static readonly string[] Tables = ["processes", "snapshots", "connections", "listening_ports", "file_events", "file_hashes", "watch_lists"];

    [Fact]
    public void After_every_snapshot_of_a_changing_machine_the_tables_and_the_shipped_rules_read_what_a_full_load_reads()
    {
        var rules = ShippedSnapshotRules();
        var world = new World(seed: 18);
        using var resident = SnapshotDatabase.CreateResident();
        var matches = rules.ToDictionary(r => r.Id, _ => 0L, StringComparer.Ordinal);
        for (var step = 0; step < 12; step++)
        {
            world.Step(step);
            var data = world.Snapshot(step);
            var changes = resident.Update(data);
            Assert.Equal(step == 0, changes.FullLoad);
            using var full = SnapshotDatabase.Create(world.Snapshot(step));

            Assert.Equal(full.TableRows.OrderBy(t => t.Key, StringComparer.Ordinal), resident.TableRows.OrderBy(t => t.Key, StringComparer.Ordinal));
            Assert.Equal(full.DuplicateProcesses, resident.DuplicateProcesses);
            foreach (var table in Tables)
            {
                Assert.Equal(Rows(full, $"SELECT * FROM {table}"), Rows(resident, $"SELECT * FROM {table}"));
            }

            foreach (var rule in rules)
            {
                var expected = Rows(full, rule.Sql);
                Assert.Equal(expected, Rows(resident, rule.Sql));
                matches[rule.Id] += expected.Count;
            }
        }

        // The data makes every rule match somewhere along the way, so the comparison means something.
        Assert.All(matches, m => Assert.True(m.Value > 0, $"{m.Key} matched nothing over the sequence"));
    }

    [Fact]
    public void An_update_changes_only_the_rows_that_changed_and_counts_them()
    {
        var world = new World(seed: 7);
        world.Step(0);
        using var resident = SnapshotDatabase.CreateResident();
        var first = resident.Update(world.Snapshot(0));
        Assert.True(first.FullLoad);
        Assert.Equal(world.Processes.Count, first.Tables["processes"].Inserted);

        var same = resident.Update(world.Snapshot(0));
        Assert.False(same.FullLoad);
        Assert.All(same.Tables, t => Assert.Equal(default, t.Value));

        world.Processes[3].CpuPercent += 1;
        world.Processes[5].RssBytes += 4096;
        world.Processes.RemoveAt(9);
        var established = world.Connections.Where(c => c.State == "ESTABLISHED").ToList();
        world.Connections.Remove(established[0]);
        established[1].State = "CLOSE_WAIT";
        world.Events.Add(world.NewEvent("/tmp/new", FileEventKind.Created));
        world.Events.Add(world.NewEvent("/usr/bin/new", FileEventKind.Modified));
        var changes = resident.Update(world.Snapshot(0));

        Assert.Equal(new RowChanges(0, 2, 1), changes.Tables["processes"]);
        Assert.Equal(new RowChanges(0, 1, 1), changes.Tables["connections"]);
        Assert.Equal(new RowChanges(2, 0, 0), changes.Tables["file_events"]);
        Assert.Equal(default, changes.Tables["listening_ports"]);
        Assert.Equal(default, changes.Tables["watch_lists"]);
        Assert.Equal(new RowChanges(0, 1, 0), changes.Tables["snapshots"]);
        Assert.Equal((2, 4, 2), (changes.Inserted, changes.Updated, changes.Deleted));
    }

    [Fact]
    public void After_a_reset_the_next_update_loads_in_full_and_holds_the_same_rows()
    {
        var world = new World(seed: 3);
        world.Step(0);
        using var resident = SnapshotDatabase.CreateResident();
        resident.Update(world.Snapshot(0));
        world.Step(1);

        resident.Reset();
        Assert.Empty(resident.TableRows);
        var changes = resident.Update(world.Snapshot(1));

        Assert.True(changes.FullLoad);
        using var full = SnapshotDatabase.Create(world.Snapshot(1));
        foreach (var table in Tables)
        {
            Assert.Equal(Rows(full, $"SELECT * FROM {table}"), Rows(resident, $"SELECT * FROM {table}"));
        }
    }

    [Fact]
    public void Between_updates_a_rule_can_only_read_the_resident_tables()
    {
        var world = new World(seed: 5);
        world.Step(0);
        using var resident = SnapshotDatabase.CreateResident();
        resident.Update(world.Snapshot(0));
        resident.Update(world.Snapshot(0));

        var delete = resident.Evaluate("DELETE FROM processes", Limit, TimeProvider.System);
        var pragma = resident.Evaluate("PRAGMA query_only = OFF", Limit, TimeProvider.System);

        Assert.NotNull(delete.Error);
        Assert.NotNull(pragma.Error);
        Assert.Equal(world.Processes.Count, Rows(resident, "SELECT * FROM processes").Count);
    }

    /// <summary>Every row of <paramref name="sql"/>, sorted (a resident row's rowid, and so the order a rule without ORDER BY reads it in, is not a full load's).</summary>
    private static List<string> Rows(SnapshotDatabase database, string sql)
    {
        var result = database.Evaluate(sql, Limit, TimeProvider.System);
        Assert.Null(result.Error);
        return [.. result.Rows.Select(r => string.Join('\u0001', r.Select(v => v ?? "\u0002NULL"))).Order(StringComparer.Ordinal)];
    }

    private static List<DetectionRule> ShippedSnapshotRules()
    {
        var (rules, problems) = RuleLoader.LoadDirectory(Path.Combine(RepositoryRoot(), "config", "rules"));
        Assert.Empty(problems);
        var snapshot = rules.Where(r => !r.IsEvent).ToList();
        Assert.True(snapshot.Count >= 6, $"{snapshot.Count} shipped snapshot rules");
        return snapshot;
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

    /// <summary>A machine that changes between snapshots; each snapshot is a fresh copy, as a parsed collector answer is.</summary>
    private sealed class World(int seed)
    {
        private static readonly string[] Names = ["bash", "sh", "nginx", "sshd", "python3", "zsh", "cupsd", "nc"];
        private static readonly string[] Dirs = ["/usr/bin", "/tmp", "/etc", "/home/u/.ssh", "/var/log", "/usr/sbin"];
        private static readonly string[] Writers = ["/usr/bin/dpkg", "/usr/bin/cp", "/usr/bin/apt-get", "/tmp/evil"];

        private readonly Random _random = new(seed);
        private uint _nextPid = 100;
        private ulong _nextInode = 5000;
        private ulong _nextSequence = 1;
        private ulong _now = 1_000_000;

        public List<ProcessInfo> Processes { get; } = [];

        public List<Connection> Connections { get; } = [];

        public List<Listener> Listeners { get; } = [];

        public List<FileEvent> Events { get; } = [];

        public List<FileHash> Hashes { get; } = [];

        private Dictionary<string, IReadOnlyList<string>> _watchLists = new(RulesOptions.DefaultWatchLists, StringComparer.Ordinal);

        public EvaluationData Snapshot(int step)
        {
            var data = new EvaluationData { WatchLists = _watchLists, EventsSinceUnixMs = step >= 6 ? (long)(_now - 40) : 0 };
            var procmond = new ProcessSnapshot { CollectorId = "procmond", TakenUnixMs = _now, Reason = "task", ScanDurationUs = (ulong)step };
            procmond.Processes.AddRange(Processes.Select(p => p.Clone()));
            data.Processes.Add(procmond);
            if (step is 3 or 4 or 9)
            {
                // A second procmond reporting some of the same processes (kept once), one with another value.
                var second = new ProcessSnapshot { CollectorId = "procmond-2", TakenUnixMs = _now, Reason = "task" };
                second.Processes.AddRange(Processes.Where((_, i) => i % 7 == 0).Select(p => p.Clone()));
                second.Processes.Add(new ProcessInfo { Pid = 1, Name = "init", Comm = "init", Executable = "/sbin/init", StartTimeUnixMs = 1 });
                if (step == 9)
                {
                    data.Processes.Insert(0, second);
                }
                else
                {
                    data.Processes.Add(second);
                }
            }

            if (step != 5)
            {
                // netmond missing from one evaluation: its tables are empty, then whole again.
                var netmond = new NetworkSnapshot { CollectorId = "netmond", TakenUnixMs = _now };
                netmond.Connections.AddRange(Connections.Select(c => c.Clone()));
                netmond.Listeners.AddRange(Listeners.Select(l => l.Clone()));
                data.Networks.Add(netmond);
            }

            var fsmond = new FileSnapshot { CollectorId = "fsmond", TakenUnixMs = _now };
            fsmond.Events.AddRange(Events.Select(e => e.Clone()));
            fsmond.Hashes.AddRange(Hashes.Select(h => h.Clone()));
            data.Files.Add(fsmond);
            return data;
        }

        public void Step(int step)
        {
            _now += 10;
            if (step == 0)
            {
                for (var i = 0; i < 60; i++)
                {
                    StartProcess();
                }

                for (var i = 0; i < 20; i++)
                {
                    Listen();
                }

                for (var i = 0; i < 200; i++)
                {
                    Events.Add(NewEvent(RandomPath(), (FileEventKind)(1 + _random.Next(5))));
                }

                return;
            }

            for (var i = 0; i < 5; i++)
            {
                StartProcess();
            }

            for (var i = 0; i < 4 && Processes.Count > 0; i++)
            {
                var gone = Processes[_random.Next(Processes.Count)];
                Processes.Remove(gone);
                Connections.RemoveAll(c => c.Owner.Pid == gone.Pid);
            }

            foreach (var p in Processes.Where(_ => _random.Next(5) == 0))
            {
                p.CpuPercent = _random.Next(100);
                p.ExeDeleted = _random.Next(10) == 0;
            }

            foreach (var c in Connections.Where(_ => _random.Next(6) == 0))
            {
                c.BytesSent += 100;
                c.State = _random.Next(4) == 0 ? "CLOSE_WAIT" : "ESTABLISHED";
            }

            if (Listeners.Count > 0)
            {
                Listeners.RemoveAt(_random.Next(Listeners.Count));
            }

            Listen();
            Events.RemoveRange(0, Math.Min(15, Events.Count));
            for (var i = 0; i < 20; i++)
            {
                Events.Add(NewEvent(RandomPath(), (FileEventKind)(1 + _random.Next(5))));
            }

            // A dropped executable run from /tmp, and a write to /etc/passwd.
            var dropped = $"/tmp/drop{step}";
            Events.Add(NewEvent(dropped, FileEventKind.Created));
            StartProcess(dropped);
            Events.Add(NewEvent("/etc/passwd", FileEventKind.Modified));
            Hashes.Add(new FileHash { Path = $"/usr/bin/h{step % 3}", Sha256 = $"{step:x64}", Size = (ulong)step, HashedUnixMs = _now });
            if (step == 8)
            {
                _watchLists = new Dictionary<string, IReadOnlyList<string>>(_watchLists, StringComparer.Ordinal) { ["shells"] = ["bash", "nc"] };
            }
        }

        public FileEvent NewEvent(string path, FileEventKind kind)
        {
            var sequence = _nextSequence++;
            return new FileEvent
            {
                Kind = kind,
                Path = path,
                NewPath = kind == FileEventKind.Moved ? RandomPath() : string.Empty,
                IsDirectory = _random.Next(10) == 0,
                Actor = new Actor { Pid = (uint)(100 + _random.Next(80)), Executable = Writers[_random.Next(Writers.Length)], Attribution = Attribution.Known },
                TimeUnixNanos = (_now - 20 + (sequence % 20)) * 1_000_000,
                Sequence = sequence,
                Source = "fanotify",

                // Some events name their collector, some leave it to the snapshot's.
                CollectorId = sequence % 3 == 0 ? "fsmond" : string.Empty,
            };
        }

        private string RandomPath() => $"{Dirs[_random.Next(Dirs.Length)]}/f{_random.Next(40)}";

        private void StartProcess(string? executable = null)
        {
            var name = Names[_random.Next(Names.Length)];
            var pid = _nextPid++;
            var socket = _random.Next(3) == 0;
            var inode = _nextInode++;
            Processes.Add(new ProcessInfo
            {
                Pid = pid,
                Ppid = 1,
                Name = name,
                Comm = name,
                Executable = executable ?? "/usr/bin/" + name,
                CommandLine = { name, pid.ToString(CultureInfo.InvariantCulture) },
                User = "u",
                StartTimeUnixMs = _now,
                Stdin = socket ? $"socket:[{inode}]" : "/dev/pts/0",
                Stdout = socket ? $"socket:[{inode}]" : "pipe:[1]",
                Stderr = "pipe:[1]",
            });
            if (socket || _random.Next(2) == 0)
            {
                Connections.Add(new Connection
                {
                    Transport = Transport.Tcp,
                    Family = IpFamily.Ipv4,
                    State = "ESTABLISHED",
                    Inode = inode,
                    Local = new Endpoint { Address = "10.0.0.1", Port = 40000 + pid },
                    Remote = new Endpoint { Address = "10.0.0.2", Port = 4444 },
                    Owner = new SocketOwner { Attributed = true, Pid = pid, Name = name },
                    FirstSeenUnixMs = _now,
                });
            }

            if (_random.Next(4) == 0)
            {
                // TIME_WAIT sockets have no inode: two on one 5-tuple (as in two network namespaces) are two rows.
                for (var i = 0; i < 2; i++)
                {
                    Connections.Add(new Connection
                    {
                        Transport = Transport.Tcp,
                        Family = IpFamily.Ipv4,
                        State = "TIME_WAIT",
                        Local = new Endpoint { Address = "10.0.0.1", Port = 80 },
                        Remote = new Endpoint { Address = "10.0.0.3", Port = 20000 + pid },
                        Owner = new SocketOwner { Pid = pid },
                        FirstSeenUnixMs = _now,
                    });
                }
            }
        }

        private void Listen()
        {
            var owner = Processes.Count > 0 ? Processes[_random.Next(Processes.Count)] : null;
            var wildcard = _random.Next(2) == 0;
            Listeners.Add(new Listener
            {
                Transport = Transport.Tcp,
                Family = IpFamily.Ipv4,
                Local = new Endpoint { Address = wildcard ? "0.0.0.0" : "127.0.0.1", Port = (uint)(1000 + _random.Next(50)) },
                Scope = wildcard ? BindScope.Wildcard : BindScope.Loopback,
                Inode = _nextInode++,
                Owner = new SocketOwner { Attributed = owner is not null, Pid = owner?.Pid ?? 0, Name = owner?.Name ?? string.Empty },
                FirstSeenUnixMs = _now,
            });
        }
    }
}
