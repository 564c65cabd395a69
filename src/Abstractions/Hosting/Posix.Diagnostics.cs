using System.Runtime.InteropServices;

namespace DaemonEye.Hosting;

/// <summary>What the agent and its clients ask the kernel to explain a failure: descriptor limits, who owns a path.</summary>
public static partial class Posix
{
    private const int RlimitNofile = 7;

    /// <summary>errno values the diagnostics name.</summary>
    public const int ENOENT = 2;

    public const int EACCES = 13;

    public const int ENOTDIR = 20;

    public const int ENFILE = 23;

    public const int EMFILE = 24;

    /// <summary>The process's open-file limit (RLIMIT_NOFILE): soft (what applies) and hard; null when the kernel does not say.</summary>
    public static (ulong Soft, ulong Hard)? OpenFileLimit()
    {
        Span<ulong> limit = stackalloc ulong[2];
        return getrlimit(RlimitNofile, ref MemoryMarshal.GetReference(limit)) == 0 ? (limit[0], limit[1]) : null;
    }

    /// <summary>
    /// Whether a file descriptor can be had now: 0 when one can (it is closed again at once), EMFILE
    /// when the process is at its RLIMIT_NOFILE, ENFILE when the system's file table is full. The
    /// runtime reports both as one SocketError (TooManyOpenSockets), so this asks the kernel again.
    /// </summary>
    public static int ProbeDescriptor()
    {
        var fd = dup(2);
        if (fd < 0)
        {
            return Marshal.GetLastPInvokeError();
        }

        _ = close(fd);
        return 0;
    }

    /// <summary>Owner, group and mode of <paramref name="path"/>, or the errno of the failed statx (ENOENT, EACCES...).</summary>
    public static bool TryGetOwnership(string path, out (uint Uid, uint Gid, UnixFileMode Mode) ownership, out int errno)
    {
        // statx has one layout on every architecture: stx_uid at 20, stx_gid at 24, stx_mode (u16) at 28.
        Span<byte> buffer = stackalloc byte[256];
        if (statx(AtFdCwd, path, AtSymlinkNoFollow, StatxBasicStats, ref MemoryMarshal.GetReference(buffer)) != 0)
        {
            errno = Marshal.GetLastPInvokeError();
            ownership = default;
            return false;
        }

        errno = 0;
        ownership = (MemoryMarshal.Read<uint>(buffer[20..]), MemoryMarshal.Read<uint>(buffer[24..]), (UnixFileMode)(MemoryMarshal.Read<ushort>(buffer[28..]) & 0xfff));
        return true;
    }

    /// <summary>The user name of <paramref name="uid"/> (getpwuid, so NSS users count), or null.</summary>
    public static string? UserName(uint uid)
    {
        // struct passwd { char *pw_name; ... }
        var entry = getpwuid(uid);
        return entry == IntPtr.Zero ? null : Marshal.PtrToStringUTF8(Marshal.ReadIntPtr(entry));
    }

    /// <summary>The group name of <paramref name="gid"/> (getgrgid), or null.</summary>
    public static string? GroupName(uint gid)
    {
        // struct group { char *gr_name; ... }
        var entry = getgrgid(gid);
        return entry == IntPtr.Zero ? null : Marshal.PtrToStringUTF8(Marshal.ReadIntPtr(entry));
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int getrlimit(int resource, ref ulong limit);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int dup(int fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int close(int fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial IntPtr getpwuid(uint uid);

    [LibraryImport("libc", SetLastError = true)]
    private static partial IntPtr getgrgid(uint gid);
}
