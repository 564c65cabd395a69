using System.Runtime.InteropServices;

namespace DaemonEye.Native.Tests;

/// <summary>
/// A tmpfs of its own on a unique temp directory: a filesystem mark on it sees only what the test
/// does, whatever else the machine is writing. Unmounted (lazily, MNT_DETACH) and removed on dispose.
/// </summary>
public sealed partial class PrivateTmpfs : IDisposable
{
    public PrivateTmpfs(string prefix = "de-fs-")
    {
        Root = Directory.CreateTempSubdirectory(prefix).FullName;
        if (Mount("tmpfs", Root, "tmpfs", 0, "size=256m,mode=0755") != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            Directory.Delete(Root);
            throw new InvalidOperationException($"mount tmpfs on {Root} failed: errno {errno}");
        }
    }

    public string Root { get; }

    public string PathOf(string name) => Path.Combine(Root, name);

    public void Dispose()
    {
        _ = Umount2(Root, 2 /* MNT_DETACH */);
        try
        {
            Directory.Delete(Root);
        }
        catch (IOException)
        {
        }
    }

    [LibraryImport("libc", EntryPoint = "geteuid")]
    internal static partial uint EffectiveUid();

    [LibraryImport("libc", EntryPoint = "mount", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Mount(string source, string target, string type, ulong flags, string data);

    [LibraryImport("libc", EntryPoint = "umount2", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Umount2(string target, int flags);
}
