using DaemonEye.Coordination;
using DaemonEye.Protocol.Process.V1;

namespace DaemonEye.Server.Tests;

/// <summary>Rule files and rule evaluation on real SQLite in memory: problems with file and line, read-only, time limit.</summary>
public sealed class DetectionRuleTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("de-rules-");

    public void Dispose() => _dir.Delete(recursive: true);

    private string Write(string name, string content)
    {
        var path = Path.Combine(_dir.FullName, name);
        File.WriteAllText(path, content);
        return path;
    }

    private static string Rule(string id, string sql, string severity = "high") =>
        $"id: {id}\nname: Rule {id}\nseverity: {severity}\ndescription: test rule\nsql: |\n  {sql}\n";

    private static ProcessSnapshot Snapshot(string collector, params (uint Pid, string Name, ulong Start)[] processes)
    {
        var snapshot = new ProcessSnapshot { CollectorId = collector, TakenUnixMs = 1, Reason = "task" };
        foreach (var (pid, name, start) in processes)
        {
            snapshot.Processes.Add(new ProcessInfo { Pid = pid, Ppid = 1, Name = name, Executable = "/usr/bin/" + name, StartTimeUnixMs = start, CommandLine = { name, "--flag" } });
        }

        return snapshot;
    }

    [Fact]
    public void A_broken_file_is_reported_with_file_and_line_and_the_other_files_still_load()
    {
        Write("10-good.yaml", Rule("good", "SELECT pid, name FROM processes WHERE name = 'sshd'"));
        var broken = Write("20-broken.yaml", "id: broken\nname: Broken\nseverity: high\nsql: \"SELECT 1\n  description: [unclosed\n");
        var badSql = Write("30-bad-sql.yaml", "id: bad-sql\nname: Bad SQL\nseverity: low\nsql: SELECT nosuchcolumn FROM processes\n");
        var badSeverity = Write("40-bad-severity.yaml", Rule("bad-severity", "SELECT pid FROM processes", severity: "urgent"));
        Write("50-also-good.yml", Rule("also-good", "SELECT pid FROM processes"));

        var (rules, problems) = RuleLoader.LoadDirectory(_dir.FullName);

        Assert.Equal(["good", "also-good"], rules.Select(r => r.Id));
        Assert.Equal(3, problems.Count);
        Assert.Equal(broken, problems[0].File);
        Assert.True(problems[0].Line >= 4, problems[0].ToString());
        Assert.Contains("is not valid YAML", problems[0].Message);
        Assert.Equal((badSql, 4, "bad-sql"), (problems[1].File, problems[1].Line, problems[1].RuleId));
        Assert.Contains("no such column: nosuchcolumn", problems[1].Message);
        Assert.Equal((badSeverity, 3), (problems[2].File, problems[2].Line));
        Assert.Contains("severity 'urgent' is invalid; allowed: low, medium, high, critical", problems[2].Message);
    }

    [Fact]
    public void Missing_keys_unknown_keys_and_duplicate_ids_are_reported()
    {
        Write("a.yaml", "id: dup\nname: A\nseverity: low\nsql: SELECT 1\n");
        Write("b.yaml", "id: dup\nname: B\nseverity: low\nsql: SELECT 2\n");
        Write("c.yaml", "id: c\nseverity: low\nsql: SELECT 1\ncolour: red\n");

        var (rules, problems) = RuleLoader.LoadDirectory(_dir.FullName);

        Assert.Equal("dup", Assert.Single(rules).Id);
        Assert.Contains(problems, p => p.Message.Contains("id 'dup' is already used by", StringComparison.Ordinal) && p.File.EndsWith("b.yaml", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.Message.StartsWith("'name' is missing", StringComparison.Ordinal) && p.Line == 1);
        Assert.Contains(problems, p => p.Message.StartsWith("unknown key 'colour'", StringComparison.Ordinal) && p.Line == 4);
    }

    [Theory]
    [InlineData("UPDATE processes SET name = 'x'", "is not read-only")]
    [InlineData("DROP TABLE processes", "is not read-only")]
    [InlineData("DELETE FROM processes", "is not read-only")]
    [InlineData("SELECT 1; DELETE FROM processes", "holds more than one statement")]
    [InlineData("PRAGMA query_only = OFF", "is refused: a rule may only read the tables with SELECT")]
    public void A_rule_that_would_write_is_refused_at_load(string sql, string expected)
    {
        var (rules, problems) = RuleLoader.Parse("w.yaml", $"id: w\nname: W\nseverity: high\nsql: \"{sql}\"\n");

        Assert.Empty(rules);
        var problem = Assert.Single(problems);
        Assert.Equal(4, problem.Line);
        Assert.Contains(expected, problem.Message);
    }

    [Theory]
    [InlineData("UPDATE processes SET name = 'x'")]
    [InlineData("DROP TABLE processes")]
    [InlineData("INSERT INTO processes SELECT * FROM processes")]
    public void Past_the_load_check_the_tables_still_refuse_writes(string sql)
    {
        using var db = SnapshotDatabase.Create([Snapshot("p", (10, "sshd", 5))]);

        var evaluation = db.Evaluate(sql, TimeSpan.FromSeconds(5), TimeProvider.System);

        Assert.NotNull(evaluation.Error);
        var after = db.Evaluate("SELECT name FROM processes", TimeSpan.FromSeconds(5), TimeProvider.System);
        Assert.Null(after.Error);
        Assert.Equal("sshd", Assert.Single(after.Rows)[0]);
    }

    [Fact]
    public void A_runaway_recursive_query_is_interrupted_at_its_time_limit()
    {
        using var db = SnapshotDatabase.Create([Snapshot("p", (10, "sshd", 5))]);
        const string Runaway = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r";
        Assert.Null(SnapshotDatabase.Check(Runaway));

        var evaluation = db.Evaluate(Runaway, TimeSpan.FromMilliseconds(100), TimeProvider.System);

        Assert.Equal("exceeded its time limit of 100 ms and was interrupted", evaluation.Error);
        Assert.Null(db.Evaluate("SELECT count(*) FROM processes", TimeSpan.FromSeconds(5), TimeProvider.System).Error);
    }

    [Fact]
    public void Processes_reported_by_two_collectors_appear_once_and_rules_see_every_column()
    {
        using var db = SnapshotDatabase.Create([
            Snapshot("p-1", (10, "sshd", 5), (11, "daemoneye-test-", 6)),
            Snapshot("p-2", (10, "sshd", 5), (12, "bash", 7)),
        ]);

        Assert.Equal(3, db.Processes);
        Assert.Equal(1, db.DuplicateProcesses);
        var evaluation = db.Evaluate("SELECT pid, name, command_line, collector_id FROM processes WHERE name = 'daemoneye-test-'", TimeSpan.FromSeconds(5), TimeProvider.System);
        Assert.Null(evaluation.Error);
        Assert.Equal(["pid", "name", "command_line", "collector_id"], evaluation.Columns);
        Assert.Equal(["11", "daemoneye-test-", "daemoneye-test- --flag", "p-1"], Assert.Single(evaluation.Rows).Select(v => v ?? "NULL"));
    }
}
