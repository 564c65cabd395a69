namespace DaemonEye.Hosting;

/// <summary>
/// Where the agent's sockets live when the configuration does not say. The agent and every
/// client resolve them the same way, so a client with the same configuration finds the agent.
/// </summary>
/// <remarks>
/// In order: <c>$XDG_RUNTIME_DIR/daemoneye/</c> when that variable is set; <c>/run/daemoneye/</c>
/// for root; otherwise <c>/tmp/daemoneye-&lt;uid&gt;/</c>.
/// </remarks>
public static class SocketPaths
{
    public const string BusSocketFileName = "eventbus.sock";
    public const string IpcSocketFileName = "ipc.sock";

    /// <summary>The directory that holds the agent's sockets by default.</summary>
    public static string DefaultDirectory()
    {
        var runtimeDir = Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR");
        if (!string.IsNullOrWhiteSpace(runtimeDir))
        {
            return Path.Combine(runtimeDir, "daemoneye");
        }

        return Posix.IsRoot ? "/run/daemoneye" : $"/tmp/daemoneye-{Posix.EffectiveUserId}";
    }

    /// <summary>The bus socket path: the configured one, or the default.</summary>
    public static string BusSocket(string? configured) =>
        string.IsNullOrWhiteSpace(configured) ? Path.Combine(DefaultDirectory(), BusSocketFileName) : Path.GetFullPath(configured);

    /// <summary>The IPC socket path: the configured one, or ipc.sock beside the bus socket.</summary>
    public static string IpcSocket(string? configuredIpc, string? configuredBus) =>
        string.IsNullOrWhiteSpace(configuredIpc)
            ? Path.Combine(Path.GetDirectoryName(BusSocket(configuredBus))!, IpcSocketFileName)
            : Path.GetFullPath(configuredIpc);
}
