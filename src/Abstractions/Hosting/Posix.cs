using System.Runtime.InteropServices;

namespace DaemonEye.Hosting;

/// <summary>The few libc calls the agent and its clients need.</summary>
public static partial class Posix
{
    /// <summary>The effective user id of this process.</summary>
    public static uint EffectiveUserId => geteuid();

    public static bool IsRoot => EffectiveUserId == 0;

    [LibraryImport("libc", SetLastError = false)]
    private static partial uint geteuid();
}
