using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using DaemonEye.Collectors.Procmond;
using DaemonEye.Protocol.Process.V1;
using static DaemonEye.Procmond.Tests.RealtimeTests;

namespace DaemonEye.Procmond.Tests;

/// <summary>procmond's anomaly checks on real processes doing the real thing (root): an executable
/// deleted before it runs, code run from a memfd, a setuid-root binary run by another user, a
/// process renaming itself. Each waits for the anomaly naming the process, then checks its record.</summary>
public sealed partial class AnomalyTests
{
    [RootFact]
    public async Task Running_a_deleted_executable_raises_deleted_exec()
    {
        var directory = Directory.CreateTempSubdirectory("procmond-deleted-");
        var copy = Path.Combine(directory.FullName, "vanishing");
        File.Copy("/bin/sleep", copy);
        File.SetUnixFileMode(copy, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        try
        {
            await using var run = await MonitorRun.StartAsync();
            // The shell holds the file open, deletes it, then executes it through the open descriptor.
            using var child = Start("/bin/sh", "-c", $"exec 3<'{copy}'; rm '{copy}'; exec /proc/self/fd/3 600");
            try
            {
                var anomaly = await run.Context.WaitAsync<ProcessAnomaly>(ProcessMonitor.AnomalyTopic, a => a.Check == AnomalyChecks.DeletedExec && a.Process.Pid == child.Id);
                Assert.Contains("deleted from disk", anomaly.Description, StringComparison.Ordinal);
                Assert.Equal("procmond-test", anomaly.CollectorId);
            }
            finally
            {
                Kill(child);
            }
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    [RootFact]
    public async Task Running_code_from_a_memfd_raises_memfd_exec()
    {
        // A memfd holding a copy of sleep, left open (no MFD_CLOEXEC) so that the child can execute it by path.
        var fd = MemfdCreate("procmond-test", 0);
        Assert.True(fd >= 0, $"memfd_create failed: errno {Marshal.GetLastPInvokeError()}");
        using var memfd = new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: true);
        RandomAccess.Write(memfd, File.ReadAllBytes("/bin/sleep"), 0);
        await using var run = await MonitorRun.StartAsync();
        using var child = Start($"/proc/{Environment.ProcessId}/fd/{fd}", "600");
        try
        {
            var anomaly = await run.Context.WaitAsync<ProcessAnomaly>(ProcessMonitor.AnomalyTopic, a => a.Check == AnomalyChecks.MemfdExec && a.Process.Pid == child.Id);
            Assert.StartsWith("/memfd:procmond-test", anomaly.Process.Executable, StringComparison.Ordinal);
        }
        finally
        {
            Kill(child);
        }
    }

    [RootFact]
    public async Task A_setuid_root_binary_run_by_another_user_raises_uid0_escalation()
    {
        // /var/tmp is on a filesystem that honours setuid here; a nosuid mount would make the test meaningless.
        var directory = Directory.CreateDirectory($"/var/tmp/procmond-suid-{Environment.ProcessId}");
        Assert.False(NoSuid(directory.FullName), $"{directory.FullName} is on a nosuid mount: setuid cannot take effect there");
        File.SetUnixFileMode(directory.FullName, (UnixFileMode)0b111_101_101);
        var copy = Path.Combine(directory.FullName, "suid-sleep");
        File.Copy("/bin/sleep", copy, overwrite: true);
        File.SetUnixFileMode(copy, UnixFileMode.SetUser | (UnixFileMode)0b111_101_101);
        try
        {
            await using var run = await MonitorRun.StartAsync();
            using var child = Start("/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", copy, "600");
            try
            {
                var anomaly = await run.Context.WaitAsync<ProcessAnomaly>(ProcessMonitor.AnomalyTopic, a => a.Check == AnomalyChecks.Uid0Escalation && a.Process.Pid == child.Id);
                // The kernel sends the uid change of a setuid exec before the exec itself: the anomaly
                // must still name the image that gained uid 0, not setpriv, which ran before it.
                Assert.Equal(copy, anomaly.Process.Executable);
                Assert.Equal("65534", anomaly.Details["previous_uid"]);
            }
            finally
            {
                Kill(child);
            }
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    [RootFact]
    public async Task A_process_renaming_itself_raises_comm_mismatch_with_the_new_name()
    {
        await using var run = await MonitorRun.StartAsync();
        // The shell renames itself at once (often before procmond has read its exec, which then
        // already finds the new name), then waits on its standard input until it is killed.
        var info = new ProcessStartInfo("/bin/sh") { UseShellExecute = false, RedirectStandardInput = true };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add("printf 'kworker/0:9' > /proc/$$/comm; read line");
        using var child = Process.Start(info)!;
        try
        {
            var anomaly = await run.Context.WaitAsync<ProcessAnomaly>(ProcessMonitor.AnomalyTopic, a => a.Check == AnomalyChecks.CommMismatch && a.Process.Pid == child.Id);
            Assert.Equal("kworker/0:9", anomaly.Details["comm"]);
            Assert.Contains(child.Id.ToString(CultureInfo.InvariantCulture), anomaly.Description, StringComparison.Ordinal);
        }
        finally
        {
            Kill(child);
        }
    }

    private static bool NoSuid(string path)
    {
        const ulong StNosuid = 2;
        Span<byte> buffer = stackalloc byte[128];
        Assert.Equal(0, StatVfs(path, ref MemoryMarshal.GetReference(buffer)));
        // struct statvfs on x86-64 and arm64 glibc: f_flag is the 10th unsigned long (offset 72).
        return (MemoryMarshal.Read<ulong>(buffer[72..]) & StNosuid) != 0;
    }

    [LibraryImport("libc", EntryPoint = "memfd_create", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int MemfdCreate(string name, uint flags);

    [LibraryImport("libc", EntryPoint = "statvfs", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int StatVfs(string path, ref byte buffer);
}
