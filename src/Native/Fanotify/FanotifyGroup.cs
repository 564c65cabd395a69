using System.Runtime.InteropServices;

namespace DaemonEye.Native.Fanotify;

/// <summary>
/// A fanotify notification group: fanotify_init, fanotify_mark, and reads of its event queue.
/// Marks live as long as the group's descriptor: disposing the group removes them all, so a
/// filesystem mark on / never outlives its owner. Needs CAP_SYS_ADMIN; a refusal throws
/// <see cref="KernelException"/> with <see cref="KernelException.IsPermissionDenied"/> set.
/// </summary>
public sealed partial class FanotifyGroup : IDisposable
{
    private const int Eagain = 11;
    private const int Eintr = 4;

    // O_RDONLY | O_LARGEFILE | O_CLOEXEC: flags of the event descriptors the kernel would open
    // (none are opened when events report file handles).
    private const uint EventFileFlags = 0x8000 | 0x80000;

    private FanotifyGroup(KernelFile file, FanotifyInitFlags flags)
    {
        File = file;
        Flags = flags;
    }

    /// <summary>The group's descriptor (to wait on with <see cref="EventWait"/>).</summary>
    public KernelFile File { get; }

    public FanotifyInitFlags Flags { get; }

    /// <summary>fanotify_init. Always adds close-on-exec.</summary>
    public static FanotifyGroup Create(FanotifyInitFlags flags)
    {
        flags |= FanotifyInitFlags.CloseOnExec;
        var fd = Init((uint)flags, EventFileFlags);
        if (fd < 0)
        {
            throw KernelException.FromLastError("fanotify_init");
        }

        return new FanotifyGroup(new KernelFile(fd), flags);
    }

    /// <summary>Adds <paramref name="mask"/> to the mark of <paramref name="target"/> kind on <paramref name="path"/>.</summary>
    public void Add(string path, FanotifyMarkTarget target, FanotifyMask mask) => Mark(path, 0x1 | (uint)target, mask);

    /// <summary>Removes <paramref name="mask"/> from the mark.</summary>
    public void Remove(string path, FanotifyMarkTarget target, FanotifyMask mask) => Mark(path, 0x2 | (uint)target, mask);

    private void Mark(string path, uint flags, FanotifyMask mask)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (MarkNative(File.Fd, flags, (ulong)mask, -100 /* AT_FDCWD */, path) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new KernelException($"fanotify_mark({path})", errno);
        }
    }

    /// <summary>
    /// Reads queued events into <paramref name="buffer"/> (at least 4096 bytes): the byte count, or 0
    /// when the queue is empty on a non-blocking group.
    /// </summary>
    public unsafe int Read(Span<byte> buffer)
    {
        fixed (byte* p = buffer)
        {
            while (true)
            {
                var n = ReadNative(File.Fd, p, (nuint)buffer.Length);
                if (n >= 0)
                {
                    return (int)n;
                }

                var errno = Marshal.GetLastPInvokeError();
                if (errno == Eintr)
                {
                    continue;
                }

                if (errno == Eagain)
                {
                    return 0;
                }

                throw new KernelException("read(fanotify)", errno);
            }
        }
    }

    public void Dispose() => File.Dispose();

    [LibraryImport("libc", EntryPoint = "fanotify_init", SetLastError = true)]
    private static partial int Init(uint flags, uint eventFileFlags);

    [LibraryImport("libc", EntryPoint = "fanotify_mark", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int MarkNative(int fd, uint flags, ulong mask, int dirfd, string path);

    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    private static unsafe partial nint ReadNative(int fd, byte* buffer, nuint count);
}
