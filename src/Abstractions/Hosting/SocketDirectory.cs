namespace DaemonEye.Hosting;

/// <summary>
/// Whether a socket's directory keeps the socket private to the agent's user (and the socket
/// group): the one judgement both the agent's bind and the start-up checks
/// (<c>daemoneye-cli config validate</c>) use, with the same words and the same advice.
/// </summary>
public static class SocketDirectory
{
    /// <summary>0700: the agent's user only.</summary>
    public const UnixFileMode PrivateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    private const UnixFileMode GroupAccess = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute;
    private const UnixFileMode OtherAccess = UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;

    /// <summary>Directories many users or the whole system share: the advice is never to change their mode.</summary>
    private static readonly HashSet<string> SharedDirectories = new(StringComparer.Ordinal)
    {
        "/", "/tmp", "/var/tmp", "/run", "/var/run", "/dev/shm", "/var", "/home", "/usr", "/etc", "/opt", "/root", "/run/user",
    };

    /// <summary>The mode the directory must have: 0700, or 0710 with a socket group.</summary>
    public static UnixFileMode WantedMode(uint? group) => group is null ? PrivateMode : PrivateMode | UnixFileMode.GroupExecute;

    /// <summary>The configuration key of a socket: <c>ipc.socket_path</c> for the IPC socket, else <c>broker.socket_path</c>.</summary>
    public static string KeyFor(string what) => string.Equals(what, "IPC", StringComparison.OrdinalIgnoreCase) ? "ipc.socket_path" : "broker.socket_path";

    /// <summary>
    /// What is wrong with <paramref name="directory"/> as the home of the <paramref name="what"/>
    /// socket, or null. A missing directory is fine when the agent can create it (it does, 0700).
    /// </summary>
    public static string? Problem(string directory, string what, uint? group)
    {
        if (!Directory.Exists(directory))
        {
            var parent = Path.GetDirectoryName(Path.TrimEndingDirectorySeparator(directory));
            while (parent is not null && !Directory.Exists(parent))
            {
                parent = Path.GetDirectoryName(parent);
            }

            return parent is null || Posix.CanWriteDirectory(parent)
                ? null
                : $"the {what} socket directory '{directory}' does not exist and this user (uid {Posix.EffectiveUserId}) may not create it in '{parent}' ({KeyFor(what)}); create it (mode 0700, owned by the agent's user) or choose another path";
        }

        uint uid, gid;
        UnixFileMode mode;
        try
        {
            (uid, gid, mode) = Posix.GetOwnership(directory);
        }
        catch (IOException ex)
        {
            return $"cannot check the {what} socket directory '{directory}': {ex.Message}";
        }

        var wanted = WantedMode(group);
        var me = Posix.EffectiveUserId;
        if (uid != me)
        {
            return $"the {what} socket directory '{directory}' is owned by uid {uid}, not by the agent's user (uid {me}); another user could replace the socket. {PrivateAdvice(directory, what, wanted, ownedByUs: false, mode)}";
        }

        if ((mode & (UnixFileMode.GroupWrite | UnixFileMode.OtherWrite)) != 0)
        {
            return $"the {what} socket directory '{directory}' is writable by group or others (mode {Octal(mode)}); it must be {Octal(wanted)} so no other user can replace the socket. {PrivateAdvice(directory, what, wanted, ownedByUs: true, mode)}";
        }

        var open = mode & (GroupAccess | OtherAccess);
        var allowedOpen = wanted & (GroupAccess | OtherAccess);
        if ((open & ~allowedOpen) != 0 || (group is { } g && (gid != g || (mode & UnixFileMode.GroupExecute) == 0)))
        {
            if (group is { } expected && !IsShared(directory, mode))
            {
                return $"the {what} socket directory '{directory}' has mode {Octal(mode)} and group {gid}; it must be {Octal(wanted)} with group {expected} (security.socket_group): chgrp {expected} {directory} && chmod {Convert.ToString((int)wanted, 8)} {directory}";
            }

            return $"the {what} socket directory '{directory}' has mode {Octal(mode)} and group {gid}; it must be {Octal(wanted)}. {PrivateAdvice(directory, what, wanted, ownedByUs: true, mode)}";
        }

        return null;
    }

    /// <summary>
    /// Advice that never breaks the host: for a shared directory (sticky like /tmp, or a system
    /// directory), a private subdirectory the agent creates; for another one, chmod or the same.
    /// </summary>
    private static string PrivateAdvice(string directory, string what, UnixFileMode wanted, bool ownedByUs, UnixFileMode mode)
    {
        var socketName = string.Equals(what, "IPC", StringComparison.OrdinalIgnoreCase) ? SocketPaths.IpcSocketFileName : SocketPaths.BusSocketFileName;
        var key = KeyFor(what);
        if (!ownedByUs)
        {
            return $"Use a directory the agent's user owns, for example {key}: {Path.Combine(SocketPaths.DefaultDirectory(), socketName)} (the agent creates it, mode {Octal(wanted)})";
        }

        var privateDirectory = Path.Combine(directory, "daemoneye");
        var example = $"{key}: {Path.Combine(privateDirectory, socketName)} (the agent creates {privateDirectory}/, mode {Octal(wanted)})";
        return IsShared(directory, mode)
            ? $"'{directory}' is shared with other users and programs: do not change its mode; give the socket a private directory instead, for example {example}"
            : $"Give the socket a private directory, for example {example}, or, if nothing but the agent uses '{directory}': chmod {Convert.ToString((int)wanted, 8)} {directory}";
    }

    private static bool IsShared(string directory, UnixFileMode mode) =>
        (mode & UnixFileMode.StickyBit) != 0 || SharedDirectories.Contains(Path.TrimEndingDirectorySeparator(directory) is { Length: > 0 } d ? d : "/");

    private static string Octal(UnixFileMode mode) => "0" + Convert.ToString((int)mode, 8);
}
