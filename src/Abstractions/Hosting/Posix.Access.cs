using System.Runtime.InteropServices;

namespace DaemonEye.Hosting;

/// <summary>access(2): what this process may do with a file, as the kernel would judge it.</summary>
public static partial class Posix
{
    private const int AccessExecute = 1;
    private const int AccessWrite = 2;

    /// <summary>This process may execute <paramref name="path"/> (for a directory: enter it).</summary>
    public static bool CanExecute(string path) => access(path, AccessExecute) == 0;

    /// <summary>This process may create entries in the directory <paramref name="path"/>.</summary>
    public static bool CanWriteDirectory(string path) => access(path, AccessWrite | AccessExecute) == 0;

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int access(string path, int mode);
}
