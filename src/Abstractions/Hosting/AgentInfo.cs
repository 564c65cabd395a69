using System.Reflection;

namespace DaemonEye;

/// <summary>Version of this build, as reported in Welcome and by the CLI.</summary>
public static class AgentInfo
{
    public static string Version { get; } =
        typeof(AgentInfo).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0.0.0";
}
