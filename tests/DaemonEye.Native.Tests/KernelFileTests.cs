using System.Runtime.InteropServices;
using DaemonEye.Native;

namespace DaemonEye.Native.Tests;

public sealed partial class KernelFileTests
{
    [Fact]
    public void Dispose_closes_the_descriptor_once()
    {
        int fd = Open("/dev/null", 0);
        Assert.True(fd >= 0);
        var file = new KernelFile(fd);
        Assert.Equal(fd, file.Fd);

        file.Dispose();
        file.Dispose();

        // The descriptor is closed: fcntl(F_GETFD) on it fails with EBADF.
        Assert.Equal(-1, Fcntl(fd, 1));
        Assert.Equal(9, Marshal.GetLastPInvokeError());
    }

    [Fact]
    public void KernelException_names_the_call_and_tells_permission_from_other_errors()
    {
        var denied = new KernelException("bind", 1);
        Assert.True(denied.IsPermissionDenied);
        Assert.Contains("bind failed", denied.Message, StringComparison.Ordinal);
        Assert.Contains("errno 1", denied.Message, StringComparison.Ordinal);
        Assert.False(new KernelException("socket", 93).IsPermissionDenied);
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    private static partial int Fcntl(int fd, int cmd);
}
