using System.Runtime.InteropServices;

namespace DaemonEye.Native.Tests;

/// <summary>A test that needs root (the proc connector, SO_RCVBUFFORCE, fanotify, mounting its own tmpfs): skipped, saying so, otherwise.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed partial class RootFactAttribute : FactAttribute
{
    public RootFactAttribute()
    {
        if (GetEuid() != 0)
        {
            Skip = "needs root (effective uid 0): the kernel gives this interface (proc connector, sock_diag destroy groups, fanotify, mount) to root only";
        }
    }

    [LibraryImport("libc", EntryPoint = "geteuid")]
    private static partial uint GetEuid();
}
