using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;

namespace DaemonEye.Native.Inotify;

/// <summary>inotify event bits (linux/inotify.h).</summary>
[Flags]
#pragma warning disable CA1711 // the kernel's own name for a set of flags
public enum InotifyMask : uint
#pragma warning restore CA1711
{
    None = 0,
    Access = 0x1,
    Modify = 0x2,
    Attrib = 0x4,
    CloseWrite = 0x8,
    CloseNoWrite = 0x10,
    Open = 0x20,
    MovedFrom = 0x40,
    MovedTo = 0x80,
    Create = 0x100,
    Delete = 0x200,
    DeleteSelf = 0x400,
    MoveSelf = 0x800,
    Unmount = 0x2000,
    QueueOverflow = 0x4000,

    /// <summary>The watch is gone (its directory was removed, or it was removed).</summary>
    Ignored = 0x8000,
    OnlyDirectory = 0x100_0000,
    DontFollow = 0x200_0000,
    ExcludeUnlinked = 0x400_0000,
    IsDirectory = 0x4000_0000,
}

/// <summary>One inotify event: the watch it came from, and the entry's name within the watched directory (null for events on the directory itself). inotify reports no process.</summary>
public readonly record struct InotifyEvent(int Watch, InotifyMask Mask, uint Cookie, string? Name);

/// <summary>
/// An inotify instance: one watch per directory, no acting process, queue overflow as
/// IN_Q_OVERFLOW. The fallback where fanotify is refused.
/// </summary>
public sealed partial class InotifyInstance : IDisposable
{
    private const int Eagain = 11;
    private const int Eintr = 4;

    private InotifyInstance(KernelFile file) => File = file;

    public KernelFile File { get; }

    /// <summary>inotify_init1(IN_NONBLOCK | IN_CLOEXEC).</summary>
    public static InotifyInstance Create()
    {
        var fd = Init(0x800 | 0x80000);
        if (fd < 0)
        {
            throw KernelException.FromLastError("inotify_init1");
        }

        return new InotifyInstance(new KernelFile(fd));
    }

    /// <summary>Adds (or replaces) the watch of <paramref name="path"/>; returns its descriptor.</summary>
    public int AddWatch(string path, InotifyMask mask)
    {
        var wd = AddWatchNative(File.Fd, path, (uint)mask);
        if (wd < 0)
        {
            throw new KernelException($"inotify_add_watch({path})", Marshal.GetLastPInvokeError());
        }

        return wd;
    }

    /// <summary>Removes a watch; false when it was already gone.</summary>
    public bool RemoveWatch(int watch) => RemoveWatchNative(File.Fd, watch) == 0;

    /// <summary>Reads queued events: the byte count, 0 when none are queued.</summary>
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

                throw new KernelException("read(inotify)", errno);
            }
        }
    }

    /// <summary>Appends the struct inotify_event records in <paramref name="buffer"/>; returns how many.</summary>
    public static int Decode(ReadOnlySpan<byte> buffer, List<InotifyEvent> events)
    {
        ArgumentNullException.ThrowIfNull(events);
        var count = 0;
        while (buffer.Length > 0)
        {
            if (buffer.Length < 16)
            {
                throw new InvalidDataException($"inotify: {buffer.Length} trailing bytes are less than an event header (16)");
            }

            var wd = BinaryPrimitives.ReadInt32LittleEndian(buffer);
            var mask = (InotifyMask)BinaryPrimitives.ReadUInt32LittleEndian(buffer[4..]);
            var cookie = BinaryPrimitives.ReadUInt32LittleEndian(buffer[8..]);
            var length = BinaryPrimitives.ReadUInt32LittleEndian(buffer[12..]);
            if (16 + length > buffer.Length)
            {
                throw new InvalidDataException($"inotify: name of {length} bytes, {buffer.Length - 16} left");
            }

            var name = buffer.Slice(16, (int)length);
            var end = name.IndexOf((byte)0);
            string? text = length == 0 ? null : Encoding.UTF8.GetString(end < 0 ? name : name[..end]);
            events.Add(new InotifyEvent(wd, mask, cookie, text));
            count++;
            buffer = buffer[(16 + (int)length)..];
        }

        return count;
    }

    public void Dispose() => File.Dispose();

    [LibraryImport("libc", EntryPoint = "inotify_init1", SetLastError = true)]
    private static partial int Init(int flags);

    [LibraryImport("libc", EntryPoint = "inotify_add_watch", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int AddWatchNative(int fd, string path, uint mask);

    [LibraryImport("libc", EntryPoint = "inotify_rm_watch", SetLastError = true)]
    private static partial int RemoveWatchNative(int fd, int wd);

    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    private static unsafe partial nint ReadNative(int fd, byte* buffer, nuint count);
}
