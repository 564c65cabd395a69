using System.Globalization;
using System.Runtime.InteropServices;

namespace DaemonEye.Hosting;

/// <summary>Users, groups and file ownership: what the agent needs to guard its sockets.</summary>
public static partial class Posix
{
    private const int AtFdCwd = -100;
    private const int AtSymlinkNoFollow = 0x100;
    private const uint StatxBasicStats = 0x7ff;

    /// <summary>The group's id from a name (getgrnam, so NSS groups count) or a decimal number.</summary>
    public static bool TryResolveGroup(string nameOrId, out uint gid)
    {
        if (uint.TryParse(nameOrId, NumberStyles.None, CultureInfo.InvariantCulture, out gid))
        {
            return true;
        }

        var entry = getgrnam(nameOrId);
        if (entry == IntPtr.Zero)
        {
            gid = 0;
            return false;
        }

        // struct group { char *gr_name; char *gr_passwd; gid_t gr_gid; char **gr_mem; }
        gid = unchecked((uint)Marshal.ReadInt32(entry, 2 * IntPtr.Size));
        return true;
    }

    /// <summary>Owner, group and permission bits of <paramref name="path"/> (not following a final symlink).</summary>
    /// <exception cref="IOException">The kernel could not say (the message carries errno).</exception>
    public static (uint Uid, uint Gid, UnixFileMode Mode) GetOwnership(string path)
    {
        // statx has one layout on every architecture: stx_uid at 20, stx_gid at 24, stx_mode (u16) at 28.
        Span<byte> buffer = stackalloc byte[256];
        if (statx(AtFdCwd, path, AtSymlinkNoFollow, StatxBasicStats, ref MemoryMarshal.GetReference(buffer)) != 0)
        {
            throw new IOException($"cannot stat '{path}': errno {Marshal.GetLastPInvokeError()}");
        }

        var uid = MemoryMarshal.Read<uint>(buffer[20..]);
        var gid = MemoryMarshal.Read<uint>(buffer[24..]);
        var mode = MemoryMarshal.Read<ushort>(buffer[28..]);
        return (uid, gid, (UnixFileMode)(mode & 0xfff));
    }

    /// <summary>Changes the group of <paramref name="path"/> (owner unchanged).</summary>
    /// <exception cref="IOException">The agent may not give the file to that group (it must be root or a member).</exception>
    public static void ChangeGroup(string path, uint gid)
    {
        if (chown(path, uint.MaxValue, gid) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new IOException($"cannot give '{path}' to group {gid}: errno {errno}{(errno == 1 ? " (EPERM: the agent must run as root or be a member of the group)" : string.Empty)}");
        }
    }

    /// <summary>The supplementary groups of process <paramref name="pid"/>, from /proc/&lt;pid&gt;/status; empty when it is gone.</summary>
    public static IReadOnlyList<uint> SupplementaryGroups(int pid)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/status"))
            {
                if (line.StartsWith("Groups:", StringComparison.Ordinal))
                {
                    var groups = new List<uint>();
                    foreach (var part in line.AsSpan("Groups:".Length).Trim().ToString().Split(' ', '\t', StringSplitOptions.RemoveEmptyEntries))
                    {
                        if (uint.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var gid))
                        {
                            groups.Add(gid);
                        }
                    }

                    return groups;
                }
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // The process exited: it has no groups to grant it anything.
        }

        return [];
    }

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial IntPtr getgrnam(string name);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int statx(int dirfd, string path, int flags, uint mask, ref byte buffer);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int chown(string path, uint owner, uint group);
}
