using System.Globalization;
using BenchmarkDotNet.Attributes;
using DaemonEye.Coordination;
using DaemonEye.Protocol.Filesystem.V1;
using DaemonEye.Protocol.Network.V1;
using DaemonEye.Protocol.Process.V1;

namespace DaemonEye.Benchmarks;

/// <summary>
/// One evaluation of every shipped snapshot rule (config/rules) over 10,000 processes, 10,000
/// connections (plus 200 listeners) and 100,000 file events, the default watch lists; a few rows match
/// each rule (issue 18's goal: the whole evaluation within 50 ms). Measured apart: loading the tables,
/// and running the rules over them. The shipped event rules (kind: event) over windows holding the
/// same data as events (10,000 exec events, 10,000 connection events, 100,000 file events): one run of
/// every event rule (what a round costs when every table changed), and one round of 100 arriving
/// events (append, retention, the rules of the changed table). Not a CI gate.
/// Run: dotnet run -c Release --project bench/DaemonEye.Benchmarks -- --filter '*ShippedRules*'
/// </summary>
[MemoryDiagnoser]
public class ShippedRulesBenchmarks
{
    private const int Processes = 10_000;
    private const int Connections = 10_000;
    private const int FileEvents = 100_000;

    private List<DetectionRule> _rules = null!;
    private List<DetectionRule> _eventRules = null!;
    private EvaluationData _data = null!;
    private SnapshotDatabase _database = null!;
    private EventWindowDatabase _windows = null!;
    private ProcessLifecycle[] _arrivals = null!;

    [GlobalSetup]
    public void Setup()
    {
        var (rules, problems) = RuleLoader.LoadDirectory(Path.Combine(RepositoryRoot(), "config", "rules"));
        if (problems.Count > 0 || rules.Count == 0)
        {
            throw new InvalidOperationException("the shipped rules do not load: " + string.Join("; ", problems));
        }

        _rules = [.. rules.Where(r => !r.IsEvent)];
        _eventRules = [.. rules.Where(r => r.IsEvent)];
        if (_eventRules.Count == 0)
        {
            throw new InvalidOperationException("no shipped event rule");
        }

        _data = Build();
        _database = SnapshotDatabase.Create(_data);
        _windows = BuildWindows(_data);
        _arrivals = [.. _data.Processes[0].Processes.Take(100).Select(p => new ProcessLifecycle { Kind = ProcessLifecycleKind.Executed, Process = p, ObservedUnixMs = EventBaseUnixMs + 1000, CollectorId = "procmond" })];
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _database.Dispose();
        _windows.Dispose();
    }

    [Benchmark(Description = "every shipped event rule over windows of 10k exec, 10k connection and 100k file events")]
    public long EventRules()
    {
        long rows = 0;
        foreach (var rule in _eventRules)
        {
            rows += Check(rule, _windows.Evaluate(rule.Sql, TimeSpan.FromSeconds(10), 100));
        }

        return rows;
    }

    [Benchmark(Description = "one event round: 100 exec events appended, retention, the rules reading process_events")]
    public long EventRound()
    {
        _windows.BeginRound();
        foreach (var e in _arrivals)
        {
            _windows.Append(e);
        }

        _windows.EndRound();
        long rows = 0;
        foreach (var rule in _eventRules.Where(r => RuleRequirements.OfEvent(r.Sql).Tables.Contains(EventWindowDatabase.ProcessEvents)))
        {
            rows += Check(rule, _windows.Evaluate(rule.Sql, TimeSpan.FromSeconds(10), 100));
        }

        return rows;
    }

    private static long Check(DetectionRule rule, RuleEvaluation result) =>
        result.Error is null ? result.TotalRows : throw new InvalidOperationException($"{rule.Id}: {result.Error}");

    [Benchmark(Description = "one evaluation: load 10k processes, 10k connections, 100k file events and run every shipped rule")]
    public long Evaluation()
    {
        using var database = SnapshotDatabase.Create(_data);
        return RunRules(database);
    }

    [Benchmark(Description = "load the tables only")]
    public int Load()
    {
        using var database = SnapshotDatabase.Create(_data);
        return database.Processes;
    }

    [Benchmark(Description = "every shipped rule over the loaded tables")]
    public long Rules() => RunRules(_database);

    private long RunRules(SnapshotDatabase database)
    {
        long rows = 0;
        foreach (var rule in _rules)
        {
            var result = database.Evaluate(rule.Sql, TimeSpan.FromSeconds(10), TimeProvider.System, 100);
            if (result.Error is not null)
            {
                throw new InvalidOperationException($"{rule.Id}: {result.Error}");
            }

            rows += result.TotalRows;
        }

        return rows;
    }

    private static EvaluationData Build()
    {
        var random = new Random(18);
        var data = new EvaluationData { WatchLists = RulesOptions.DefaultWatchLists };
        string[] names = ["bash", "sshd", "nginx", "postgres", "python3", "dotnet", "sh", "cron", "systemd", "node"];
        var processes = new ProcessSnapshot { CollectorId = "procmond", TakenUnixMs = 1, Reason = "task" };
        for (var i = 0; i < Processes; i++)
        {
            var name = names[random.Next(names.Length)];
            var pid = (uint)(i + 2);
            var info = new ProcessInfo
            {
                Pid = pid,
                Ppid = (uint)(i == 0 ? 1 : random.Next(1, i + 2)),
                Name = name,
                Comm = name,
                Executable = i % 1000 == 7 ? $"/tmp/x{i}" : "/usr/bin/" + name,
                CommandLine = { name, "--option", i.ToString(CultureInfo.InvariantCulture) },
                User = "user",
                StartTimeUnixMs = (ulong)(1_700_000_000_000 + i),
                ExeDeleted = i % 2000 == 3,
                Stdin = i % 1000 == 11 ? $"socket:[{1_000_000 + i}]" : "/dev/pts/0",
                Stdout = "pipe:[42]",
                Stderr = "pipe:[42]",
            };
            processes.Processes.Add(info);
        }

        data.Processes.Add(processes);
        var network = new NetworkSnapshot { CollectorId = "netmond", TakenUnixMs = 1 };
        for (var i = 0; i < Connections; i++)
        {
            network.Connections.Add(new Connection
            {
                Transport = Transport.Tcp,
                Family = IpFamily.Ipv4,
                State = "ESTABLISHED",
                Inode = (ulong)(1_000_000 + i),
                Local = new Endpoint { Address = "10.0.0.1", Port = (uint)(30000 + (i % 30000)) },
                Remote = new Endpoint { Address = "10.0.0.2", Port = 443 },
                Owner = new SocketOwner { Attributed = true, Pid = (uint)(i + 2), Name = names[i % names.Length] },
                FirstSeenUnixMs = 1,
            });
        }

        for (var i = 0; i < 200; i++)
        {
            network.Listeners.Add(new Listener
            {
                Transport = Transport.Tcp,
                Family = IpFamily.Ipv4,
                Local = new Endpoint { Address = i % 2 == 0 ? "0.0.0.0" : "127.0.0.1", Port = (uint)(1000 + i) },
                Scope = i % 2 == 0 ? BindScope.Wildcard : BindScope.Loopback,
                Owner = new SocketOwner { Attributed = true, Pid = (uint)(i + 2), Name = names[i % names.Length] },
                FirstSeenUnixMs = (ulong)(i < 190 ? 1 : 2),
            });
        }

        data.Networks.Add(network);
        var files = new FileSnapshot { CollectorId = "fsmond", TakenUnixMs = 1 };
        string[] dirs = ["/var/log/app", "/home/user/src", "/etc", "/usr/bin", "/tmp", "/var/lib/db"];
        for (var i = 0; i < FileEvents; i++)
        {
            var dir = dirs[i % dirs.Length];
            files.Events.Add(new FileEvent
            {
                Kind = i % 1000 == 7 ? FileEventKind.Created : (FileEventKind)(1 + (i % 5)),
                Path = i % 10_000 == 5 ? "/etc/passwd" : i % 1000 == 7 ? $"/tmp/x{i % Processes}" : $"{dir}/file{i % 5000}",
                Actor = new Actor { Pid = (uint)(2 + (i % Processes)), Executable = "/usr/bin/" + names[i % names.Length], Attribution = Attribution.Known },
                TimeUnixNanos = (ulong)(1_700_000_000_000_000_000 + (long)i),
                Sequence = (ulong)i,
                Executable = dir == "/tmp",
                Source = "fanotify",
            });
        }

        data.Files.Add(files);
        return data;
    }

    private const long EventBaseUnixMs = 1_700_000_000_000;

    /// <summary>The windows holding the snapshot data as events: each process exec'd 1 s after the file events, every connection opened.</summary>
    private static EventWindowDatabase BuildWindows(EvaluationData data)
    {
        // Row caps at the rows loaded: the rounds the EventRound benchmark appends push the oldest out, as in the agent, so the windows keep their size.
        static EventWindowOptions Cap(int rows) => new() { MaxAgeSeconds = 86400, MaxRows = rows };
        var windows = new EventWindowDatabase(
            new EventWindowsOptions { ProcessEvents = Cap(Processes), ConnectionEvents = Cap(Connections), FilesystemEvents = Cap(FileEvents) }, RulesOptions.DefaultWatchLists, TimeProvider.System);
        windows.BeginRound();
        foreach (var p in data.Processes[0].Processes)
        {
            windows.Append(new ProcessLifecycle { Kind = ProcessLifecycleKind.Executed, Process = p, ObservedUnixMs = EventBaseUnixMs + 1000, CollectorId = "procmond" });
        }

        foreach (var c in data.Networks[0].Connections)
        {
            windows.Append(new ConnectionEvent { Kind = ConnectionEventKind.Opened, Connection = c, ObservedUnixMs = EventBaseUnixMs, CollectorId = "netmond" });
        }

        foreach (var f in data.Files[0].Events)
        {
            var e = f.Clone();
            e.TimeUnixNanos = (ulong)EventBaseUnixMs * 1_000_000;
            windows.Append(e);
        }

        windows.EndRound();
        return windows;
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

        throw new InvalidOperationException("run from inside the repository: config/rules is read from it");
    }
}
