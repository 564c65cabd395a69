using System.Runtime.InteropServices;

namespace DaemonEye.Collectors.Procmond.Proc;

/// <summary>The libc calls procmond reads /proc with: no allocation, errno kept.</summary>
internal static unsafe partial class Native
{
    public const int ENOENT = 2;
    public const int ESRCH = 3;
    public const int EACCES = 13;
    public const int EPERM = 1;
    public const int EINTR = 4;
    private const int ORdOnly = 0;
    private const int OCloExec = 0x80000;
    private const int AtFdCwd = -100;
    private const uint StatxBasicStats = 0x7ff;
    private const int ScClkTck = 2;

    /// <summary>Reads at most <paramref name="buffer"/>.Length bytes of the file at the NUL-terminated
    /// <paramref name="path"/>. Returns the byte count, or -errno.</summary>
    public static int ReadFile(ReadOnlySpan<byte> path, Span<byte> buffer)
    {
        int fd;
        fixed (byte* p = path)
        {
            fd = open(p, ORdOnly | OCloExec);
        }

        if (fd < 0)
        {
            return -Marshal.GetLastPInvokeError();
        }

        try
        {
            var total = 0;
            fixed (byte* b = buffer)
            {
                while (total < buffer.Length)
                {
                    var n = read(fd, b + total, buffer.Length - total);
                    if (n < 0)
                    {
                        var errno = Marshal.GetLastPInvokeError();
                        if (errno == EINTR)
                        {
                            continue;
                        }

                        return -errno;
                    }

                    if (n == 0)
                    {
                        break;
                    }

                    total += (int)n;
                }
            }

            return total;
        }
        finally
        {
            _ = close(fd);
        }
    }

    /// <summary>readlink(2) of the NUL-terminated <paramref name="path"/>: the byte count, or -errno.</summary>
    public static int ReadLink(ReadOnlySpan<byte> path, Span<byte> buffer)
    {
        fixed (byte* p = path)
        fixed (byte* b = buffer)
        {
            var n = readlink(p, b, buffer.Length);
            return n < 0 ? -Marshal.GetLastPInvokeError() : (int)n;
        }
    }

    /// <summary>statx(2), following symbolic links (so /proc/&lt;pid&gt;/exe gives the running image):
    /// 0 and the file's identity, or -errno.</summary>
    public static int Stat(ReadOnlySpan<byte> path, out FileKey key)
    {
        var buffer = stackalloc byte[256];
        int rc;
        fixed (byte* p = path)
        {
            rc = statx(AtFdCwd, p, 0, StatxBasicStats, buffer);
        }

        if (rc != 0)
        {
            key = default;
            return -Marshal.GetLastPInvokeError();
        }

        // struct statx: stx_nlink @16 (u32), stx_ino @32, stx_size @40, stx_mtime @112 (i64 sec, u32 nsec),
        // stx_dev_major @136, stx_dev_minor @140 (u32).
        var nlink = *(uint*)(buffer + 16);
        var ino = *(ulong*)(buffer + 32);
        var size = *(ulong*)(buffer + 40);
        var mtime = (*(long*)(buffer + 112) * 1_000_000_000L) + *(uint*)(buffer + 120);
        var dev = ((ulong)*(uint*)(buffer + 136) << 32) | *(uint*)(buffer + 140);
        key = new FileKey(dev, ino, size, mtime, nlink);
        return 0;
    }

    public static long ClockTicksPerSecond
    {
        get
        {
            var ticks = sysconf(ScClkTck);
            return ticks > 0 ? ticks : 100;
        }
    }

    public static bool IsGone(int errno) => errno is ENOENT or ESRCH;

    public static bool IsDenied(int errno) => errno is EACCES or EPERM;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int open(byte* path, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint read(int fd, byte* buffer, nint count);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int close(int fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint readlink(byte* path, byte* buffer, nint size);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int statx(int dirfd, byte* path, int flags, uint mask, byte* buffer);

    [LibraryImport("libc", SetLastError = false)]
    private static partial long sysconf(int name);
}

/// <summary>A file's identity for the hash cache: device, inode, size and mtime. Links is not part
/// of the identity: 0 means the file was unlinked (a running image deleted or replaced on disk).</summary>
internal readonly record struct FileKey(ulong Device, ulong Inode, ulong Size, long MtimeNanos, uint Links)
{
    /// <summary>Same file, same content as far as the cache is concerned.</summary>
    public bool SameFile(FileKey other) => Device == other.Device && Inode == other.Inode && Size == other.Size && MtimeNanos == other.MtimeNanos;

    public FileKey Identity => this with { Links = 0 };
}
