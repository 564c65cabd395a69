using System.Globalization;
using System.Runtime.InteropServices;
using DaemonEye.Collectors.Procmond;
using DaemonEye.Collectors.Procmond.Proc;
using Microsoft.Extensions.Time.Testing;

namespace DaemonEye.Procmond.Tests;

/// <summary>
/// A /proc tree in a fresh temp directory, written as the kernel lays it out (stat, status, cmdline,
/// an exe symbolic link), with real executables to hash, and a table scanning it on a fake clock.
/// </summary>
internal sealed partial class FakeProc : IDisposable
{
    public const long BootTime = 1795601069;
    public const int ClockTicks = 100;

    public FakeProc(ProcmondSettings? settings = null)
    {
        Directory = System.IO.Directory.CreateTempSubdirectory("procmond-test-").FullName;
        Root = Path.Combine(Directory, "proc");
        Files = Path.Combine(Directory, "files");
        System.IO.Directory.CreateDirectory(Root);
        System.IO.Directory.CreateDirectory(Files);
        File.Copy(Path.Combine(AppContext.BaseDirectory, "Fixtures", "proc-stat"), Path.Combine(Root, "stat"));
        File.WriteAllText(Path.Combine(Directory, "passwd"), "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n");
        Settings = settings ?? new ProcmondSettings();
        Time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeSeconds(BootTime + 20_000));
        Hasher = new ExecutableHasher(Settings.HashQueueCapacity, Settings.HashCacheEntries, () => Settings.HashMaxFileBytes);
        Table = new ProcessTable(new ProcReader(Root), Hasher, new UserDirectory(Path.Combine(Directory, "passwd")), Settings, Time, "procmond-test");
        OpenUp(Directory);
    }

    public string Directory { get; }

    public string Root { get; }

    public string Files { get; }

    public ProcmondSettings Settings { get; }

    public FakeTimeProvider Time { get; }

    public ExecutableHasher Hasher { get; }

    public ProcessTable Table { get; }

    /// <summary>A real file to run as an executable, with the given content.</summary>
    public string Executable(string name, string content)
    {
        var path = Path.Combine(Files, name);
        File.WriteAllText(path, content);
        OpenUp(path);
        return path;
    }

    public void Add(int pid, string comm, int ppid, ulong startTicks, string? exe, string[]? cmdline = null, uint uid = 1000, ulong utime = 0, int threads = 1, long rssPages = 100)
    {
        var dir = Path.Combine(Root, pid.ToString(CultureInfo.InvariantCulture));
        System.IO.Directory.CreateDirectory(dir);
        // No executable: a kernel thread (PF_KTHREAD in the flags, as for the real kthreadd).
        SetStat(pid, comm, ppid, startTicks, utime, threads, rssPages, flags: exe is null ? 2129984u : 4194304u);
        File.WriteAllText(Path.Combine(dir, "status"), $"Name:\t{comm}\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t{pid}\nPid:\t{pid}\nPPid:\t{ppid}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t{uid}\t{uid}\t{uid}\t{uid}\n");
        File.WriteAllText(Path.Combine(dir, "cmdline"), string.Concat((cmdline ?? [exe ?? comm]).Select(a => a + "\0")));
        if (exe is not null)
        {
            SetExeLink(pid, exe);
        }

        OpenUp(dir);
    }

    public void SetStat(int pid, string comm, int ppid, ulong startTicks, ulong utime = 0, int threads = 1, long rssPages = 100, string state = "S", uint flags = 4194304)
    {
        var path = Path.Combine(Root, pid.ToString(CultureInfo.InvariantCulture), "stat");
        File.WriteAllText(path, string.Create(CultureInfo.InvariantCulture, $"{pid} ({comm}) {state} {ppid} {pid} {pid} 0 -1 {flags} 0 0 0 0 {utime} 0 0 0 20 0 {threads} 0 {startTicks} 3000000 {rssPages} 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"));
        OpenUp(path);
    }

    public void SetExeLink(int pid, string target)
    {
        var link = Path.Combine(Root, pid.ToString(CultureInfo.InvariantCulture), "exe");
        File.Delete(link);
        File.CreateSymbolicLink(link, target);
    }

    public void Remove(int pid) => System.IO.Directory.Delete(Path.Combine(Root, pid.ToString(CultureInfo.InvariantCulture)), recursive: true);

    /// <summary>Scans, then lets the hasher finish what the scan asked for.</summary>
    public async Task<ScanChanges> ScanAsync()
    {
        var changes = Table.Scan();
        await Hasher.DrainAsync(CancellationToken.None);
        return changes;
    }

    /// <summary>Runs <paramref name="action"/> on a new thread whose filesystem uid is <paramref name="uid"/>
    /// (Linux credentials are per thread; a non-zero fsuid drops CAP_DAC_OVERRIDE, so even root gets EACCES).</summary>
    public static T AsUser<T>(uint uid, Func<T> action)
    {
        T result = default!;
        Exception? error = null;
        var thread = new Thread(() =>
        {
            var previous = setfsuid(uid);
            try
            {
                result = action();
            }
            catch (Exception e)
            {
                error = e;
            }
            finally
            {
                _ = setfsuid((uint)previous);
            }
        });
        thread.Start();
        thread.Join();
        return error is null ? result : throw new InvalidOperationException("failed as another user", error);
    }

    private static void OpenUp(string path) =>
        File.SetUnixFileMode(path, File.GetAttributes(path).HasFlag(FileAttributes.Directory)
            ? UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute
            : UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);

    public void Dispose()
    {
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    [LibraryImport("libc")]
    private static partial int setfsuid(uint fsuid);
}
