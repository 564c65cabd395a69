using System.Globalization;
using System.Net.Sockets;
using DaemonEye.Hosting;

namespace DaemonEye.Client;

/// <summary>
/// Why connecting to one of the agent's sockets failed, in words a person can act on. The connect
/// error alone is not enough: a socket in a directory this user may not search fails with EACCES,
/// and a check for the file from outside that directory cannot see it either, so "not found" would
/// be a lie. The path is examined with statx, component by component: a missing socket (ENOENT) is
/// "not found ... is daemoneye-agent running?"; a directory or socket this user may not use (EACCES)
/// is "permission denied", naming its owner (the user the agent runs as: it owns its socket
/// directory) and what to do.
/// </summary>
internal static class AgentSocketDiagnosis
{
    public static string Describe(string path, SocketException e, string what = "agent socket")
    {
        var full = Path.GetFullPath(path);
        if (Posix.TryGetOwnership(full, out var socket, out var errno))
        {
            return e.SocketErrorCode switch
            {
                SocketError.AccessDenied => PermissionDenied(full, what, full, socket),
                SocketError.ConnectionRefused => $"{what} {path} exists but refuses connections (stale socket?) — is daemoneye-agent running?",
                _ => $"cannot connect to {what} {path}: {e.Message}",
            };
        }

        if (errno == Posix.EACCES || e.SocketErrorCode == SocketError.AccessDenied)
        {
            // A directory on the way may not be searched by this user: the deepest one it can still see is it.
            for (var directory = Path.GetDirectoryName(full); directory is not null; directory = Path.GetDirectoryName(directory))
            {
                if (Posix.TryGetOwnership(directory, out var owner, out _))
                {
                    return PermissionDenied(full, what, directory, owner);
                }
            }

            return $"permission denied connecting to {what} {path}: this user ({Describe(Posix.EffectiveUserId)}) may not reach it — run as the agent's user or root";
        }

        if (errno is Posix.ENOENT or Posix.ENOTDIR && !Posix.TryGetOwnership(Path.GetDirectoryName(full) ?? "/", out _, out _))
        {
            return $"{what} not found at {path} (its directory does not exist) — is daemoneye-agent running?";
        }

        return errno is Posix.ENOENT or Posix.ENOTDIR
            ? $"{what} not found at {path} — is daemoneye-agent running?"
            : $"cannot connect to {what} {path}: {e.Message}";
    }

    /// <summary>EACCES at <paramref name="blocking"/> (the socket, or a directory above it), owned by the agent's user.</summary>
    private static string PermissionDenied(string path, string what, string blocking, (uint Uid, uint Gid, UnixFileMode Mode) owner)
    {
        var agentUser = Describe(owner.Uid);
        var me = Describe(Posix.EffectiveUserId);
        var mode = Convert.ToString((int)owner.Mode, 8).PadLeft(4, '0');
        var where = blocking == path ? "the socket" : blocking;
        var groupOpen = (owner.Mode & (UnixFileMode.GroupExecute | UnixFileMode.GroupWrite)) != 0;
        var group = Posix.GroupName(owner.Gid) is { } name ? $"'{name}' (gid {owner.Gid.ToString(CultureInfo.InvariantCulture)})" : $"gid {owner.Gid.ToString(CultureInfo.InvariantCulture)}";
        var viaGroup = groupOpen
            ? $"or as a member of group {group}, the agent's security.socket_group (its security.allowed_gids must admit that group too)"
            : "or have the agent's configuration share the sockets with a group you are in (security.socket_group, and security.allowed_gids to admit it)";
        return $"permission denied connecting to {what} {path}: {where} belongs to {agentUser} with mode {mode}, and this command runs as {me}. "
            + $"The agent runs as {agentUser}: run this command as {(owner.Uid == 0 ? "root (e.g. with sudo)" : $"{agentUser} or root")}, {viaGroup}";
    }

    private static string Describe(uint uid) => Posix.UserName(uid) is { } name
        ? $"user '{name}' (uid {uid.ToString(CultureInfo.InvariantCulture)})"
        : $"uid {uid.ToString(CultureInfo.InvariantCulture)}";
}
