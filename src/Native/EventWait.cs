using System.Runtime.InteropServices;

namespace DaemonEye.Native;

/// <summary>
/// Waits for a kernel descriptor (a fanotify group, an inotify instance) to become readable, and
/// can be woken from another thread (an eventfd polled beside it), so a reader thread blocked in
/// <see cref="Wait"/> stops at once when its owner stops, without a timeout.
/// </summary>
public sealed partial class EventWait : IDisposable
{
    private const short PollIn = 0x1;
    private const int Eintr = 4;
    private readonly KernelFile _wake;

    public EventWait()
    {
        var fd = EventFd(0, 0x80000 | 0x800); // EFD_CLOEXEC | EFD_NONBLOCK
        if (fd < 0)
        {
            throw KernelException.FromLastError("eventfd");
        }

        _wake = new KernelFile(fd);
    }

    /// <summary>Blocks until <paramref name="fd"/> is readable (true) or <see cref="Wake"/> was called (false).</summary>
    public unsafe bool Wait(KernelFile fd)
    {
        ArgumentNullException.ThrowIfNull(fd);
        var fds = stackalloc PollFd[2];
        fds[0] = new PollFd { Fd = fd.Fd, Events = PollIn };
        fds[1] = new PollFd { Fd = _wake.Fd, Events = PollIn };
        while (true)
        {
            var n = Poll(fds, 2, -1);
            if (n < 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                if (errno == Eintr)
                {
                    continue;
                }

                throw new KernelException("poll", errno);
            }

            if ((fds[1].Revents & PollIn) != 0)
            {
                return false;
            }

            if (fds[0].Revents != 0)
            {
                return true;
            }
        }
    }

    /// <summary>Makes every current and future <see cref="Wait"/> return false.</summary>
    public unsafe void Wake()
    {
        ulong one = 1;
        _ = Write(_wake.Fd, &one, 8);
    }

    public void Dispose() => _wake.Dispose();

    [StructLayout(LayoutKind.Sequential)]
    private struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    [LibraryImport("libc", EntryPoint = "eventfd", SetLastError = true)]
    private static partial int EventFd(uint initval, int flags);

    [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
    private static unsafe partial int Poll(PollFd* fds, nuint count, int timeout);

    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    private static unsafe partial nint Write(int fd, void* buffer, nuint count);
}
