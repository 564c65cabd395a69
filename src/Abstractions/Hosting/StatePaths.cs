namespace DaemonEye.Hosting;

/// <summary>
/// Where the agent keeps state that must outlive a restart (the durable log). The runtime
/// directory of <see cref="SocketPaths"/> is often a tmpfs and is not used for it.
/// </summary>
/// <remarks>
/// In order: <c>$STATE_DIRECTORY</c> (systemd's StateDirectory=) when set; <c>/var/lib/daemoneye</c>
/// for root; <c>$XDG_STATE_HOME/daemoneye</c>; otherwise <c>~/.local/state/daemoneye</c>.
/// </remarks>
public static class StatePaths
{
    /// <summary>The directory that holds the agent's persistent state by default.</summary>
    public static string DefaultDirectory()
    {
        var systemd = Environment.GetEnvironmentVariable("STATE_DIRECTORY");
        if (!string.IsNullOrWhiteSpace(systemd))
        {
            // systemd may list several, separated by ':'; the first is the agent's.
            return systemd.Split(':')[0];
        }

        if (Posix.IsRoot)
        {
            return "/var/lib/daemoneye";
        }

        var xdg = Environment.GetEnvironmentVariable("XDG_STATE_HOME");
        return !string.IsNullOrWhiteSpace(xdg)
            ? Path.Combine(xdg, "daemoneye")
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".local", "state", "daemoneye");
    }
}
