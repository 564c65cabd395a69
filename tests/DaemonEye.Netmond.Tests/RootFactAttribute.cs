using System.Runtime.InteropServices;

namespace DaemonEye.Netmond.Tests;

/// <summary>A test that needs root (the destroy notifications need CAP_NET_ADMIN): skipped, saying so, otherwise.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed partial class RootFactAttribute : FactAttribute
{
    public RootFactAttribute()
    {
        if (GetEuid() != 0)
        {
            Skip = "needs root (effective uid 0): the kernel's socket destroy notifications need CAP_NET_ADMIN";
        }
    }

    [LibraryImport("libc", EntryPoint = "geteuid")]
    private static partial uint GetEuid();
}
