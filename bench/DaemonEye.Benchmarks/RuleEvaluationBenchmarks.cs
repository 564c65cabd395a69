using BenchmarkDotNet.Attributes;
using DaemonEye.Coordination;
using DaemonEye.Protocol.Process.V1;

namespace DaemonEye.Benchmarks;

/// <summary>
/// Ten detection rules over a snapshot of 1,000 processes (target: all ten within 10 ms), and loading
/// the snapshot into SQLite. Run: dotnet run -c Release --project bench/DaemonEye.Benchmarks -- --filter '*RuleEvaluation*'
/// </summary>
[MemoryDiagnoser]
public class RuleEvaluationBenchmarks
{
    private static readonly string[] Rules =
    [
        "SELECT pid, name, executable FROM processes WHERE executable LIKE '%/daemoneye-test-target'",
        "SELECT pid, name FROM processes WHERE exe_deleted = 1",
        "SELECT pid, name, user FROM processes WHERE uid = 0 AND executable LIKE '/tmp/%'",
        "SELECT p.pid, p.name, c.pid AS child FROM processes p JOIN processes c ON c.ppid = p.pid WHERE p.name = 'nginx' AND c.name IN ('sh', 'bash')",
        "SELECT pid, name, cpu_percent FROM processes WHERE cpu_percent > 90",
        "SELECT pid, name, rss_bytes FROM processes WHERE rss_bytes > 4000000000",
        "SELECT name, count(*) AS n FROM processes GROUP BY name HAVING n > 50",
        "SELECT pid, command_line FROM processes WHERE command_line LIKE '%curl%|%sh%'",
        "SELECT pid, name FROM processes WHERE exe_sha256 = '' AND executable <> ''",
        "SELECT pid, name FROM processes WHERE ppid NOT IN (SELECT pid FROM processes) AND ppid > 1",
    ];

    private ProcessSnapshot _snapshot = null!;
    private SnapshotDatabase _database = null!;

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(42);
        string[] names = ["bash", "sshd", "nginx", "postgres", "python3", "dotnet", "sh", "cron", "systemd", "node"];
        _snapshot = new ProcessSnapshot { CollectorId = "procmond", TakenUnixMs = 1, Reason = "task" };
        for (var i = 0; i < 1000; i++)
        {
            var name = names[random.Next(names.Length)];
            _snapshot.Processes.Add(new ProcessInfo
            {
                Pid = (uint)(i + 2),
                Ppid = (uint)(i == 0 ? 1 : random.Next(1, i + 2)),
                Name = name,
                Executable = "/usr/bin/" + name,
                CommandLine = { name, "--option", i.ToString(System.Globalization.CultureInfo.InvariantCulture) },
                Uid = (uint)random.Next(0, 3),
                User = "user",
                StartTimeUnixMs = (ulong)(1_700_000_000_000 + i),
                CpuPercent = random.NextDouble() * 100,
                RssBytes = (ulong)random.Next(1, 1 << 30),
                Threads = (uint)random.Next(1, 64),
                ExeSha256 = i % 7 == 0 ? string.Empty : "ab",
            });
        }

        _database = SnapshotDatabase.Create([_snapshot]);
    }

    [GlobalCleanup]
    public void Cleanup() => _database.Dispose();

    [Benchmark(Description = "10 rules over 1,000 processes")]
    public int TenRules()
    {
        var rows = 0;
        foreach (var rule in Rules)
        {
            rows += (int)_database.Evaluate(rule, TimeSpan.FromSeconds(1), TimeProvider.System, 100).TotalRows;
        }

        return rows;
    }

    [Benchmark(Description = "load 1,000 processes into SQLite")]
    public int Load()
    {
        using var db = SnapshotDatabase.Create([_snapshot]);
        return db.Processes;
    }
}
