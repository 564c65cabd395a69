using System.Globalization;
using DaemonEye.Coordination;
using DaemonEye.Protocol.Filesystem.V1;
using DaemonEye.Protocol.Network.V1;
using DaemonEye.Protocol.Process.V1;
using Google.Protobuf;
using Google.Protobuf.Reflection;

namespace DaemonEye.Server.Tests;

/// <summary>
/// The resident tables (<see cref="SnapshotDatabase.CreateResident"/>), updated with what changed
/// between evaluations, hold exactly what a fresh full load of the same data holds: after each of a
/// sequence of snapshots with processes, connections, listeners, file events and hashes added,
/// changed and removed (duplicate processes from a second procmond, repeated socket identities, a
/// collector missing for one evaluation, the retention window moving, the watch lists changing, fsmond
/// restarting and numbering its events from 1 again, with and without a run), every table and every
/// shipped snapshot rule reads the same rows from both. Every field of every row message, changed
/// alone, updates its row exactly when a column holds it. Real SQLite, the shipped rules.
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
    public void A_file_event_is_compared_unless_its_snapshot_names_the_run_its_sequence_is_from()
    {
        using var resident = SnapshotDatabase.CreateResident();

        // No run: fsmond restarted and numbers from 1 again, so sequence 1 now names another event. It is compared, and updated.
        resident.Update(Files(0, Event(1, "/tmp/a")));
        var restarted = resident.Update(Files(0, Event(1, "/usr/bin/b")));
        Assert.Equal(new RowChanges(0, 1, 0), restarted.Tables["file_events"]);
        AssertHoldsWhatAFullLoadHolds(resident, Files(0, Event(1, "/usr/bin/b")));

        // With runs: the restart is another run, so the same sequence is another event.
        resident.Update(Files(5, Event(1, "/tmp/a")));
        var newRun = resident.Update(Files(6, Event(1, "/usr/bin/b")));
        Assert.Equal(new RowChanges(1, 0, 1), newRun.Tables["file_events"]);
        AssertHoldsWhatAFullLoadHolds(resident, Files(6, Event(1, "/usr/bin/b")));

        // Within one run an event held by its name is not compared: fsmond never changes an event it
        // numbered (FileEventRunTests, FileWatchTests), and the table keeps what it holds.
        var sameName = resident.Update(Files(6, Event(1, "/etc/passwd")));
        Assert.Equal(default, sameName.Tables["file_events"]);
        Assert.Equal("/usr/bin/b", Assert.Single(resident.Evaluate("SELECT path FROM file_events", Limit, TimeProvider.System).Rows)[0]);

        // An event naming another collector than the snapshot's is not of the snapshot's run: compared.
        var relayed = Event(1, "/tmp/c");
        relayed.CollectorId = "fsmond-2";
        resident.Update(Files(6, relayed));
        var relayedChanged = Event(1, "/tmp/d");
        relayedChanged.CollectorId = "fsmond-2";
        Assert.Equal(new RowChanges(0, 1, 0), resident.Update(Files(6, relayedChanged)).Tables["file_events"]);
    }

    [Fact]
    public void A_changed_field_updates_its_row_exactly_when_a_column_holds_it()
    {
        var unbound = new List<string>();
        EachFieldAlone(
            "processes",
            new ProcessInfo
            {
                Pid = 10, Ppid = 1, Name = "bash", Comm = "bash", Executable = "/usr/bin/bash", CommandLine = { "bash", "-i" }, Uid = 1000, User = "u",
                StartTimeUnixMs = 5, CpuPercent = 1.5, RssBytes = 4096, Threads = 1, ExeSha256 = "ab", Euid = 1000, Stdin = "socket:[7]", Stdout = "/dev/pts/0", Stderr = "pipe:[1]",
            },
            p => new EvaluationData { Processes = { new ProcessSnapshot { CollectorId = "procmond", Processes = { p } } } },
            unbound);
        var owner = new SocketOwner { Attributed = true, Pid = 10, Name = "bash", Executable = "/usr/bin/bash", Uid = 1000, User = "u", UidKnown = true, Cgroup = "/user.slice", CgroupId = 3 };
        EachFieldAlone(
            "connections",
            new Connection
            {
                Transport = Transport.Tcp, Family = IpFamily.Ipv4, Local = new Endpoint { Address = "10.0.0.1", Port = 40000 }, Remote = new Endpoint { Address = "10.0.0.2", Port = 443 },
                Direction = Direction.Outbound, State = "ESTABLISHED", Cookie = 9, Inode = 7, Owner = owner, FirstSeenUnixMs = 5, BytesSent = 10, BytesReceived = 20, Retransmits = 1, RttUs = 300,
            },
            c => new EvaluationData { Networks = { new NetworkSnapshot { CollectorId = "netmond", Connections = { c } } } },
            unbound);
        EachFieldAlone(
            "listening_ports",
            new Listener
            {
                Transport = Transport.Tcp, Family = IpFamily.Ipv4, Local = new Endpoint { Address = "0.0.0.0", Port = 22 }, Scope = BindScope.Wildcard, Exposed = true, Inode = 8,
                Owner = owner.Clone(), FirstSeenUnixMs = 5,
            },
            l => new EvaluationData { Networks = { new NetworkSnapshot { CollectorId = "netmond", Listeners = { l } } } },
            unbound);
        var e = Event(3, "/usr/bin/ls");
        e.NewPath = "/usr/bin/ls2";
        e.Mode = 0x81ED;
        e.Size = 100;
        e.Executable = true;
        e.CollectorId = "fsmond";
        e.Actor.Comm = "cp";
        e.Actor.User = "root";
        EachFieldAlone("file_events", e, x => Files(0, x), unbound);
        EachFieldAlone(
            "file_hashes",
            new FileHash { Path = "/usr/bin/ls", Sha256 = "ab", Size = 100, MtimeUnixNanos = 5_000_000, HashedUnixMs = 6, Problem = "none" },
            h => new EvaluationData { Files = { new FileSnapshot { CollectorId = "fsmond", Hashes = { h } } } },
            unbound);

        // What no column holds makes no update: a connection's round-trip time changes every scan.
        Assert.Contains("connections: rtt_us", unbound);
        Assert.Contains("connections: owner.cgroup", unbound);
        Assert.Contains("processes: missing_fields", unbound);
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

    private static EvaluationData Files(ulong run, FileEvent e) =>
        new() { Files = { new FileSnapshot { CollectorId = "fsmond", Run = run, Events = { e } } } };

    private static FileEvent Event(ulong sequence, string path) => new()
    {
        Kind = FileEventKind.Modified,
        Path = path,
        Actor = new Actor { Pid = 50, Executable = "/usr/bin/cp", Uid = 0, Attribution = Attribution.Known },
        TimeUnixNanos = 7_000_000_000,
        Sequence = sequence,
        Source = "fanotify",
    };

    private static void AssertHoldsWhatAFullLoadHolds(SnapshotDatabase resident, EvaluationData data)
    {
        using var full = SnapshotDatabase.Create(data);
        foreach (var table in Tables)
        {
            Assert.Equal(Rows(full, $"SELECT * FROM {table}"), Rows(resident, $"SELECT * FROM {table}"));
        }
    }

    /// <summary>
    /// For each field of <paramref name="item"/> (those of its messages too), that field changed alone:
    /// the resident table, updated from <paramref name="item"/>, holds what a full load holds, and it
    /// changed a row exactly when the full loads before and after differ. The fields that changed no
    /// column are added to <paramref name="unbound"/> as "table: field".
    /// </summary>
    private static void EachFieldAlone<T>(string table, T item, Func<T, EvaluationData> data, List<string> unbound)
        where T : IMessage<T>
    {
        var sql = $"SELECT * FROM {table}";
        foreach (var path in Leaves(item.Descriptor, []))
        {
            var changed = item.Clone();
            Change(changed, path);
            var name = string.Join('.', path.Select(f => f.Name));
            using var resident = SnapshotDatabase.CreateResident();
            resident.Update(data(item.Clone()));
            var changes = resident.Update(data(changed.Clone())).Tables[table];
            using var before = SnapshotDatabase.Create(data(item.Clone()));
            using var after = SnapshotDatabase.Create(data(changed.Clone()));

            var columnsChanged = !Rows(before, sql).SequenceEqual(Rows(after, sql));
            Assert.Equal(Rows(after, sql), Rows(resident, sql));
            Assert.True(columnsChanged == (changes.Total > 0), $"{table}: {name} changed: columns {(columnsChanged ? "changed" : "the same")}, rows changed {changes}");
            if (!columnsChanged)
            {
                unbound.Add($"{table}: {name}");
            }
        }
    }

    private static IEnumerable<FieldDescriptor[]> Leaves(MessageDescriptor message, FieldDescriptor[] prefix)
    {
        foreach (var field in message.Fields.InDeclarationOrder())
        {
            FieldDescriptor[] path = [.. prefix, field];
            if (field.FieldType == FieldType.Message && !field.IsRepeated && !field.IsMap)
            {
                foreach (var leaf in Leaves(field.MessageType, path))
                {
                    yield return leaf;
                }
            }
            else
            {
                yield return path;
            }
        }
    }

    private static void Change(IMessage message, FieldDescriptor[] path)
    {
        var target = message;
        foreach (var field in path[..^1])
        {
            if (field.Accessor.GetValue(target) is not IMessage inner)
            {
                inner = field.MessageType.Parser.ParseFrom(ByteString.Empty);
                field.Accessor.SetValue(target, inner);
            }

            target = inner;
        }

        var leaf = path[^1];
        if (leaf.IsMap || (leaf.IsRepeated && leaf.FieldType != FieldType.String))
        {
            throw new InvalidOperationException($"{leaf.FullName}: no change defined for this kind of field");
        }

        if (leaf.IsRepeated)
        {
            ((System.Collections.IList)leaf.Accessor.GetValue(target)).Add("added");
            return;
        }

        var value = leaf.Accessor.GetValue(target);
        leaf.Accessor.SetValue(target, leaf.FieldType switch
        {
            FieldType.String => (string)value + "~",
            FieldType.Bool => !(bool)value,
            FieldType.UInt32 or FieldType.Fixed32 => (uint)value + 1,
            FieldType.UInt64 or FieldType.Fixed64 => (ulong)value + 1,
            FieldType.Int32 or FieldType.SInt32 or FieldType.SFixed32 => (int)value + 1,
            FieldType.Int64 or FieldType.SInt64 or FieldType.SFixed64 => (long)value + 1,
            FieldType.Double => (double)value + 1.5,
            FieldType.Float => (float)value + 1.5f,
            FieldType.Enum => Enum.ToObject(value.GetType(), Convert.ToInt32(value, CultureInfo.InvariantCulture) + 1),
            _ => throw new InvalidOperationException($"{leaf.FullName}: no change defined for {leaf.FieldType}"),
        });
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
        private ulong _run = 1;
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

            // Steps 10 and 11: an fsmond that gives no run (its events are compared, not trusted by name).
            var fsmond = new FileSnapshot { CollectorId = "fsmond", TakenUnixMs = _now, Run = step is 10 or 11 ? 0 : _run };
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
            if (step is 7 or 11)
            {
                // fsmond restarted: its window is empty and it numbers events from 1 again, so new events
                // come under sequences the tables hold with other values (a new run at 7; no run at 11).
                Events.Clear();
                _nextSequence = 1;
                _run++;
            }

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
