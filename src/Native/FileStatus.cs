using System.Runtime.InteropServices;

namespace DaemonEye.Native;

/// <summary>What statx(2) says about a path (not following a final symlink).</summary>
public readonly partial record struct FileStatus(uint Mode, uint Uid, uint Gid, ulong Size, ulong Inode, long MtimeUnixNanos)
{
    public bool IsRegular => (Mode & 0xF000) == 0x8000;

    public bool IsDirectory => (Mode & 0xF000) == 0x4000;

    /// <summary>statx of <paramref name="path"/>, or null with errno in <paramref name="errno"/>.</summary>
    public static unsafe FileStatus? Read(string path, out int errno)
    {
        var buffer = stackalloc byte[256];
        if (Statx(-100 /* AT_FDCWD */, path, 0x100 /* AT_SYMLINK_NOFOLLOW */, 0x7FF /* STATX_BASIC_STATS */, buffer) != 0)
        {
            errno = Marshal.GetLastPInvokeError();
            return null;
        }

        errno = 0;
        return new FileStatus(
            *(ushort*)(buffer + 28), *(uint*)(buffer + 20), *(uint*)(buffer + 24), *(ulong*)(buffer + 40), *(ulong*)(buffer + 32),
            (*(long*)(buffer + 112) * 1_000_000_000L) + *(uint*)(buffer + 120));
    }

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int Statx(int dirfd, string path, int flags, uint mask, byte* buffer);
}
