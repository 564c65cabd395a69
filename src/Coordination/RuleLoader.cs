namespace DaemonEye.Coordination;

/// <summary>Rule files as the agent loads them: <see cref="RuleFiles"/> with each rule's SQL compiled against the snapshot schema (snapshot rules) or the event window schema (event rules).</summary>
public static class RuleLoader
{
    public static IReadOnlyList<string> Severities => RuleFiles.Severities;

    /// <summary>Every *.yaml / *.yml file of <paramref name="directory"/>, in name order.</summary>
    public static (List<DetectionRule> Rules, List<RuleProblem> Problems) LoadDirectory(string directory) =>
        RuleFiles.LoadDirectory(directory, SnapshotDatabase.Check, EventWindowDatabase.Check);

    /// <summary>The rules of one file's text; its problems instead when it has any.</summary>
    public static (List<DetectionRule> Rules, List<RuleProblem> Problems) Parse(string file, string content) =>
        RuleFiles.Parse(file, content, SnapshotDatabase.Check, EventWindowDatabase.Check);
}
