using System.Net.Sockets;
using DaemonEye.Hosting;

namespace DaemonEye.Gateway;

/// <summary>
/// Binds a listening Unix-domain socket the way every agent socket is bound: in a directory owned
/// by the agent's user of mode 0700 (0710 with a socket group; created if missing), the socket
/// itself 0600 (0660 with a socket group), refusing a path a live process serves and removing a
/// stale socket file left by a crashed agent. Mode and ownership are verified after binding.
/// </summary>
public static class UnixSocketBinder
{
    private const UnixFileMode DirectoryMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    private const UnixFileMode SocketMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <exception cref="InvalidOperationException">The path is served by a live process or cannot be used; the message says why.</exception>
    /// <exception cref="SocketSecurityException">The directory or socket would not be private to the agent (and <paramref name="group"/>).</exception>
    public static Socket Bind(string path, string what, uint? group = null)
    {
        var directory = Path.GetDirectoryName(path) ?? throw new InvalidOperationException($"{what} socket path '{path}' has no directory");
        PrepareDirectory(directory, what, group);

        if (File.Exists(path) || Directory.Exists(path))
        {
            if (Directory.Exists(path))
            {
                throw new InvalidOperationException($"{what} socket path '{path}' is a directory; point the socket path elsewhere");
            }

            if (IsServed(path))
            {
                throw new InvalidOperationException($"another process (probably a running daemoneye-agent) is already serving the {what} socket '{path}'; stop it or configure a different socket path");
            }

            // Nobody answers: a stale socket file from an agent that did not shut down cleanly.
            File.Delete(path);
        }

        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Bind(new UnixDomainSocketEndPoint(path));
            SecureSocketFile(path, what, group);
            socket.Listen(512);
            return socket;
        }
        catch (SocketException ex)
        {
            socket.Dispose();
            throw new InvalidOperationException($"cannot listen on {what} socket '{path}': {ex.Message}; check that the directory is writable", ex);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private static void SecureSocketFile(string path, string what, uint? group)
    {
        var mode = SocketMode;
        File.SetUnixFileMode(path, mode);
        try
        {
            if (group is { } gid)
            {
                Posix.ChangeGroup(path, gid);
                mode |= UnixFileMode.GroupRead | UnixFileMode.GroupWrite;
                File.SetUnixFileMode(path, mode);
            }

            var (uid, actualGid, actual) = Posix.GetOwnership(path);
            if (uid != Posix.EffectiveUserId || actual != mode || (group is { } g && actualGid != g))
            {
                throw new SocketSecurityException(
                    $"the {what} socket '{path}' has owner {uid}, group {actualGid}, mode {Octal(actual)} after binding; expected owner {Posix.EffectiveUserId}, mode {Octal(mode)}{(group is { } expected ? $", group {expected} (security.socket_group)" : string.Empty)}");
            }
        }
        catch (IOException ex)
        {
            throw new SocketSecurityException($"cannot secure the {what} socket '{path}': {ex.Message}", ex);
        }
    }

    private static string Octal(UnixFileMode mode) => "0" + Convert.ToString((int)mode, 8);

    /// <summary>Removes the socket file if it is there.</summary>
    public static void Remove(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
            // Already gone or not ours to remove; nothing else to do at shutdown.
        }
        catch (UnauthorizedAccessException)
        {
            // Same.
        }
    }

    private static void PrepareDirectory(string directory, string what, uint? group)
    {
        var wanted = SocketDirectory.WantedMode(group);
        if (!Directory.Exists(directory))
        {
            try
            {
                Directory.CreateDirectory(directory, DirectoryMode);
                if (group is { } gid)
                {
                    Posix.ChangeGroup(directory, gid);
                    File.SetUnixFileMode(directory, wanted);
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new InvalidOperationException($"cannot create the {what} socket directory '{directory}': {ex.Message}", ex);
            }
        }

        VerifyDirectory(directory, what, group);
    }

    /// <summary>The directory must be the agent user's, writable by nobody else, and open to no one
    /// but (for search only) the socket group: otherwise another user could replace or reach the socket.</summary>
    private static void VerifyDirectory(string directory, string what, uint? group)
    {
        if (SocketDirectory.Problem(directory, what, group) is { } problem)
        {
            throw new SocketSecurityException(problem);
        }
    }

    private static bool IsServed(string path)
    {
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}

/// <summary>A socket or its directory would not be private to the agent; a configuration problem (exit 2).</summary>
public sealed class SocketSecurityException : InvalidOperationException
{
    public SocketSecurityException(string message)
        : base(message)
    {
    }

    public SocketSecurityException(string message, Exception inner)
        : base(message, inner)
    {
    }
}
