using System.Globalization;
using DaemonEye.Coordination;
using DaemonEye.Protocol.Filesystem.V1;
using DaemonEye.Protocol.Network.V1;
using DaemonEye.Protocol.Process.V1;

namespace DaemonEye.Benchmarks;

/// <summary>
/// The data of the shipped-rule benchmarks (<see cref="ShippedRulesBenchmarks"/>,
/// <see cref="ShippedRuleBenchmarks"/>): 10,000 processes, 10,000 connections plus 200 listeners,
/// 100,000 file events and the default watch lists, with a few rows for each rule to find (and all
/// 16,667 file events under /usr/bin for system-binary-modified); the same data as events for the
/// event windows.
/// </summary>
internal static class ShippedRulesData
{
    public const int Processes = 10_000;
    public const int Connections = 10_000;
    public const int FileEvents = 100_000;
    public const long EventBaseUnixMs = 1_700_000_000_000;

    /// <summary>config/rules, every rule of it loaded.</summary>
    public static IReadOnlyList<DetectionRule> Rules()
    {
        var (rules, problems) = RuleLoader.LoadDirectory(Path.Combine(RepositoryRoot(), "config", "rules"));
        if (problems.Count > 0 || rules.Count == 0)
        {
            throw new InvalidOperationException("the shipped rules do not load: " + string.Join("; ", problems));
        }

        return rules;
    }

    public static long Check(DetectionRule rule, RuleEvaluation result) =>
        result.Error is null ? result.TotalRows : throw new InvalidOperationException($"{rule.Id}: {result.Error}");

    public static EvaluationData Build()
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
        // fsmond names its numbering (run): the resident table trusts an event it holds by that name.
        var files = new FileSnapshot { CollectorId = "fsmond", TakenUnixMs = 1, Run = 1 };
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

    /// <summary>
    /// <paramref name="data"/> one evaluation later, as a fresh copy (a parsed collector answer): 1 % of
    /// the processes and of the connections changed (a third exited or closed, a third new, a third with
    /// new counters), and 1,000 new file events, the 1,000 oldest gone (fsmond's ring of recent events).
    /// </summary>
    public static EvaluationData Changed(EvaluationData data)
    {
        var next = Copy(data);
        var processes = next.Processes[0].Processes;
        var changed = Processes / 100;
        for (var i = 0; i < changed / 3; i++)
        {
            processes.RemoveAt(processes.Count - 1 - (i * 97));
        }

        for (var i = 0; i < changed / 3; i++)
        {
            var p = processes[i * 89].Clone();
            p.Pid = (uint)(Processes + 10 + i);
            p.StartTimeUnixMs += 1_000_000;
            processes.Add(p);
        }

        for (var i = 0; i < changed - (2 * (changed / 3)); i++)
        {
            processes[(i * 101) + 5].CpuPercent += 1.5;
            processes[(i * 101) + 5].RssBytes += 4096;
        }

        var connections = next.Networks[0].Connections;
        changed = Connections / 100;
        for (var i = 0; i < changed / 3; i++)
        {
            connections.RemoveAt(connections.Count - 1 - (i * 97));
        }

        for (var i = 0; i < changed / 3; i++)
        {
            var c = connections[i * 89].Clone();
            c.Inode += 5_000_000;
            c.Local.Port = (uint)(60000 + i);
            connections.Add(c);
        }

        for (var i = 0; i < changed - (2 * (changed / 3)); i++)
        {
            connections[(i * 101) + 5].BytesSent += 1500;
        }

        var events = next.Files[0].Events;
        var newest = events[^1].Sequence;
        for (var i = 0; i < 1000; i++)
        {
            var e = events[i].Clone();
            e.Sequence = newest + 1 + (ulong)i;
            e.TimeUnixNanos += 1_000_000_000;
            events.Add(e);
        }

        for (var i = 0; i < 1000; i++)
        {
            events.RemoveAt(0);
        }

        return next;
    }

    /// <summary><paramref name="data"/> as a file collector that gives no run answers it: every file event it holds is compared.</summary>
    public static EvaluationData WithoutRun(EvaluationData data)
    {
        foreach (var files in data.Files)
        {
            files.Run = 0;
        }

        return data;
    }

    /// <summary>A fresh copy of <paramref name="data"/>: the same content in new objects, as the next parse of the same answers.</summary>
    public static EvaluationData Copy(EvaluationData data)
    {
        var copy = new EvaluationData { WatchLists = data.WatchLists, EventsSinceUnixMs = data.EventsSinceUnixMs };
        copy.Processes.AddRange(data.Processes.Select(p => p.Clone()));
        copy.Networks.AddRange(data.Networks.Select(n => n.Clone()));
        copy.Files.AddRange(data.Files.Select(f => f.Clone()));
        return copy;
    }

    /// <summary>The windows holding the snapshot data as events: each process exec'd 1 s after the file events, every connection opened.</summary>
    public static EventWindowDatabase BuildWindows(EvaluationData data)
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
