using System.Runtime.InteropServices;

namespace DaemonEye.Native;

/// <summary>
/// A file descriptor the kernel gave us (a netlink socket, a fanotify group, ...), closed
/// exactly once when disposed or finalized.
/// </summary>
public sealed partial class KernelFile : SafeHandle
{
    public KernelFile(int fd)
        : base(new IntPtr(-1), ownsHandle: true) => SetHandle(new IntPtr(fd));

    public override bool IsInvalid => handle.ToInt64() < 0;

    /// <summary>The raw descriptor, for system calls. Valid while this object is not disposed.</summary>
    public int Fd => (int)handle.ToInt64();

    protected override bool ReleaseHandle() => Close(Fd) == 0;

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
