using System.Net.Sockets;

namespace DaemonEye.Gateway;

/// <summary>
/// Binds a listening Unix-domain socket the way every agent socket is bound: in a directory of
/// mode 0700 (created if missing), the socket itself 0600, refusing a path a live process serves
/// and removing a stale socket file left by a crashed agent.
/// </summary>
public static class UnixSocketBinder
{
    private const UnixFileMode DirectoryMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    private const UnixFileMode SocketMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <exception cref="InvalidOperationException">The path is served by a live process or cannot be used; the message says why.</exception>
    public static Socket Bind(string path, string what)
    {
        var directory = Path.GetDirectoryName(path) ?? throw new InvalidOperationException($"{what} socket path '{path}' has no directory");
        PrepareDirectory(directory, what);

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
            File.SetUnixFileMode(path, SocketMode);
            socket.Listen(512);
            return socket;
        }
        catch (SocketException ex)
        {
            socket.Dispose();
            throw new InvalidOperationException($"cannot listen on {what} socket '{path}': {ex.Message}; check that the directory is writable", ex);
        }
    }

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

    private static void PrepareDirectory(string directory, string what)
    {
        if (!Directory.Exists(directory))
        {
            try
            {
                Directory.CreateDirectory(directory, DirectoryMode);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new InvalidOperationException($"cannot create the {what} socket directory '{directory}': {ex.Message}", ex);
            }

            return;
        }

        var mode = File.GetUnixFileMode(directory);
        if ((mode & (UnixFileMode.GroupWrite | UnixFileMode.OtherWrite)) != 0)
        {
            throw new InvalidOperationException(
                $"the {what} socket directory '{directory}' is writable by group or others (mode {Convert.ToString((int)mode, 8)}); it must be 0700 so no other user can replace the socket; use a private directory");
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
