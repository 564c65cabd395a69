using System.Reflection;
using DaemonEye.Configuration;

namespace DaemonEye.Cli.Commands;

/// <summary>
/// Where the agent is installed, so the CLI resolves a relative collector executable the way the
/// agent will (its working directory, then its own directory).
/// </summary>
internal static class AgentLocation
{
    private const string AgentFile = "daemoneye-agent.dll";

    /// <summary>The checks' view: this working directory, and the agent's directory.</summary>
    public static StartupCheckContext CheckContext() => new(Environment.CurrentDirectory, Directory());

    /// <summary>
    /// In order: the CLI's own directory when the agent is there too; <c>../agent</c> beside it (the
    /// installed layout <c>PREFIX/lib/daemoneye/{agent,cli}</c>); the agent's build output in a source
    /// tree (the CLI built from the same tree); else the CLI's own directory.
    /// </summary>
    public static string Directory()
    {
        var own = AppContext.BaseDirectory;
        string?[] candidates =
        [
            own,
            Path.GetFullPath(Path.Combine(own, "..", "agent")),
            typeof(AgentLocation).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().FirstOrDefault(a => a.Key == "DaemonEyeAgentBuildDirectory")?.Value,
        ];
        return candidates.FirstOrDefault(c => c is not null && File.Exists(Path.Combine(c, AgentFile))) ?? own;
    }
}
