using System.Text.RegularExpressions;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace DaemonEye.Coordination;

/// <summary>
/// One SQL detection rule, as loaded from its file. <see cref="Key"/>: the columns whose values
/// identify one finding for de-duplication (empty: the whole row).
/// </summary>
public sealed record DetectionRule(string Id, string Name, string Severity, string Description, string Sql, string File, int Line)
{
    public IReadOnlyList<string> Key { get; init; } = [];

    /// <summary>
    /// <see cref="RuleFiles.SnapshotKind"/> (the default: SQL over collector snapshots, run on the rules
    /// interval) or <see cref="RuleFiles.EventKind"/> (SQL over the sliding event windows, run as events arrive).
    /// </summary>
    public string Kind { get; init; } = RuleFiles.SnapshotKind;

    public bool IsEvent => Kind == RuleFiles.EventKind;
}

/// <summary>A rule file that did not load, or a rule that failed when it ran.</summary>
public sealed record RuleProblem(string File, int Line, string? RuleId, string Message)
{
    public override string ToString() => $"{File}{(Line > 0 ? ":" + Line : string.Empty)}: {(RuleId is null ? string.Empty : $"rule '{RuleId}': ")}{Message}";
}

/// <summary>
/// Reads rule files: YAML, one rule per file as a mapping with id, name, severity, description and
/// sql, optionally key (comma-separated columns identifying one finding for de-duplication) and kind
/// (<c>snapshot</c>, the default, or <c>event</c>), or a sequence of such mappings. The SQL is checked
/// by <c>checkSql</c> (snapshot rules) or <c>checkEventSql</c> (event rules) when given (the agent's
/// checks compile it against the snapshot schema or the event window schema; without them only the
/// YAML and fields are). Every problem is reported with the file and line and never stops the other
/// rules: a file with a problem contributes none of its rules.
/// </summary>
public static partial class RuleFiles
{
    public static readonly IReadOnlyList<string> Severities = ["low", "medium", "high", "critical"];
    public const string SnapshotKind = "snapshot";
    public const string EventKind = "event";
    public static readonly IReadOnlyList<string> Kinds = [SnapshotKind, EventKind];
    private static readonly string[] Keys = ["id", "name", "severity", "description", "sql", "key", "kind"];

    /// <summary>Every *.yaml / *.yml file of <paramref name="directory"/>, in name order.</summary>
    public static (List<DetectionRule> Rules, List<RuleProblem> Problems) LoadDirectory(string directory, Func<string, string?>? checkSql = null, Func<string, string?>? checkEventSql = null)
    {
        var rules = new List<DetectionRule>();
        var problems = new List<RuleProblem>();
        if (!Directory.Exists(directory))
        {
            problems.Add(new RuleProblem(directory, 0, null, $"the rules directory '{Path.GetFullPath(directory)}' does not exist (coordination.rules.directory); no rules are loaded"));
            return (rules, problems);
        }

        var files = Directory.EnumerateFiles(directory)
            .Where(f => f.EndsWith(".yaml", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".yml", StringComparison.OrdinalIgnoreCase))
            .Order(StringComparer.Ordinal);
        foreach (var file in files)
        {
            string content;
            try
            {
                content = File.ReadAllText(file);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                problems.Add(new RuleProblem(file, 0, null, $"cannot be read: {ex.Message}"));
                continue;
            }

            var (fileRules, fileProblems) = Parse(file, content, checkSql, checkEventSql);
            problems.AddRange(fileProblems);
            foreach (var rule in fileRules)
            {
                var twin = rules.Find(r => string.Equals(r.Id, rule.Id, StringComparison.Ordinal));
                if (twin is not null)
                {
                    problems.Add(new RuleProblem(file, rule.Line, rule.Id, $"id '{rule.Id}' is already used by {twin.File}:{twin.Line}; rule ids must be unique (this one is skipped)"));
                    continue;
                }

                rules.Add(rule);
            }
        }

        return (rules, problems);
    }

    /// <summary>The rules of one file's text; its problems instead when it has any.</summary>
    public static (List<DetectionRule> Rules, List<RuleProblem> Problems) Parse(string file, string content, Func<string, string?>? checkSql = null, Func<string, string?>? checkEventSql = null)
    {
        var rules = new List<DetectionRule>();
        var problems = new List<RuleProblem>();
        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(content));
        }
        catch (YamlException ex)
        {
            problems.Add(new RuleProblem(file, (int)ex.Start.Line, null, $"is not valid YAML: {Inner(ex).Message}"));
            return (rules, problems);
        }

        if (stream.Documents.Count == 0 || stream.Documents[0].RootNode is YamlScalarNode { Value: null or "" })
        {
            problems.Add(new RuleProblem(file, 1, null, "is empty; a rule file holds a mapping with id, name, severity, description and sql"));
            return (rules, problems);
        }

        var root = stream.Documents[0].RootNode;
        IEnumerable<YamlNode> entries = root switch
        {
            YamlSequenceNode sequence => sequence.Children,
            _ => [root],
        };
        foreach (var entry in entries)
        {
            var (rule, entryProblems) = ParseRule(file, entry, checkSql, checkEventSql);
            problems.AddRange(entryProblems);
            if (rule is not null)
            {
                rules.Add(rule);
            }
        }

        if (problems.Count > 0)
        {
            rules.Clear();
        }

        return (rules, problems);
    }

    private static (DetectionRule? Rule, List<RuleProblem> Problems) ParseRule(string file, YamlNode node, Func<string, string?>? checkSql, Func<string, string?>? checkEventSql)
    {
        var problems = new List<RuleProblem>();
        var line = (int)node.Start.Line;
        if (node is not YamlMappingNode mapping)
        {
            problems.Add(new RuleProblem(file, line, null, "a rule must be a mapping with id, name, severity, description and sql"));
            return (null, problems);
        }

        var values = new Dictionary<string, (string Value, int Line)>(StringComparer.Ordinal);
        foreach (var (keyNode, valueNode) in mapping.Children)
        {
            var key = (keyNode as YamlScalarNode)?.Value ?? string.Empty;
            if (!Keys.Contains(key, StringComparer.Ordinal))
            {
                problems.Add(new RuleProblem(file, (int)keyNode.Start.Line, null, $"unknown key '{key}'; allowed: {string.Join(", ", Keys)}"));
                continue;
            }

            if (valueNode is not YamlScalarNode scalar)
            {
                problems.Add(new RuleProblem(file, (int)valueNode.Start.Line, null, $"'{key}' must be a text value"));
                continue;
            }

            values[key] = (scalar.Value ?? string.Empty, (int)valueNode.Start.Line);
        }

        var id = values.TryGetValue("id", out var idValue) ? idValue.Value : null;
        foreach (var required in new[] { "id", "name", "severity", "sql" })
        {
            if (!values.TryGetValue(required, out var v) || string.IsNullOrWhiteSpace(v.Value))
            {
                problems.Add(new RuleProblem(file, line, id, $"'{required}' is missing or empty; a rule needs id, name, severity and sql (description is optional)"));
            }
        }

        if (id is { Length: > 0 } && !IdPattern().IsMatch(id))
        {
            problems.Add(new RuleProblem(file, values["id"].Line, id, $"id '{id}' is invalid; allowed: 1 to 64 characters from a-z, 0-9, '_', '-' and '.'"));
        }

        if (values.TryGetValue("severity", out var severity) && severity.Value.Length > 0 && !Severities.Contains(severity.Value, StringComparer.Ordinal))
        {
            problems.Add(new RuleProblem(file, severity.Line, id, $"severity '{severity.Value}' is invalid; allowed: {string.Join(", ", Severities)}"));
        }

        var kind = values.TryGetValue("kind", out var kindValue) ? kindValue.Value : SnapshotKind;
        if (!Kinds.Contains(kind, StringComparer.Ordinal))
        {
            problems.Add(new RuleProblem(file, kindValue.Line, id, $"kind '{kind}' is invalid; allowed: {string.Join(", ", Kinds)} (snapshot: over collector snapshots on the rules interval; event: over the sliding event windows as events arrive)"));
            kind = SnapshotKind;
        }

        var check = kind == EventKind ? checkEventSql : checkSql;
        if (values.TryGetValue("sql", out var sql) && sql.Value.Trim().Length > 0 && check?.Invoke(sql.Value) is { } sqlError)
        {
            problems.Add(new RuleProblem(file, sql.Line, id, $"sql: {sqlError}"));
        }

        if (problems.Count > 0)
        {
            return (null, problems);
        }

        return (new DetectionRule(id!, values["name"].Value, values["severity"].Value,
            values.TryGetValue("description", out var d) ? d.Value : string.Empty, values["sql"].Value.Trim(), file, values["sql"].Line)
        {
            Key = values.TryGetValue("key", out var k) ? [.. k.Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)] : [],
            Kind = kind,
        }, problems);
    }

    private static Exception Inner(Exception ex) => ex.InnerException is YamlException inner ? inner : ex;

    [GeneratedRegex("^[a-z0-9_.-]{1,64}$")]
    private static partial Regex IdPattern();
}
