using System.Globalization;
using DaemonEye.Protocol.Process.V1;

namespace DaemonEye.Collectors.Procmond;

/// <summary>
/// The anomaly checks procmond runs on process events (docs/collectors.md, "procmond anomaly
/// checks"). Each can be turned off (<c>anomaly_&lt;check&gt; 0</c>) and given an allow-list of
/// executable paths or directory prefixes (<c>anomaly_allow &lt;check&gt;=&lt;path&gt;,...</c>).
/// Each anomaly names its check and carries the process record.
/// </summary>
internal sealed class AnomalyChecks(ProcmondSettings settings, string collectorId)
{
    public const string VolatileExec = "volatile_exec";
    public const string DeletedExec = "deleted_exec";
    public const string MemfdExec = "memfd_exec";
    public const string Uid0Escalation = "uid0_escalation";
    public const string PtraceAttach = "ptrace_attach";
    public const string CommMismatch = "comm_mismatch";

    public static readonly string[] All = [VolatileExec, DeletedExec, MemfdExec, Uid0Escalation, PtraceAttach, CommMismatch];

    private static readonly string[] VolatileDirectories = ["/tmp/", "/dev/shm/", "/var/tmp/"];

    private long _fired;
    private long _allowed;

    public long Fired => Interlocked.Read(ref _fired);

    /// <summary>Anomalies an allow-list entry suppressed (counted, not published).</summary>
    public long Allowed => Interlocked.Read(ref _allowed);

    public void OnExec(TrackedProcess p, Func<TrackedProcess, ProcessInfo> info, ulong nowUnixMs, List<ProcessAnomaly> into)
    {
        var exe = p.Executable;
        if (exe.StartsWith("/memfd:", StringComparison.Ordinal))
        {
            Fire(MemfdExec, p, info, nowUnixMs, into, $"pid {p.Pid} executes a memfd ({exe}): code that never was a file on disk");
            return;
        }

        if (p.ExeDeleted)
        {
            Fire(DeletedExec, p, info, nowUnixMs, into, $"pid {p.Pid} executes {exe}, deleted from disk");
        }

        if (exe.Length > 0 && VolatileDirectory(exe) is { } directory)
        {
            Fire(VolatileExec, p, info, nowUnixMs, into, $"pid {p.Pid} executes {exe} from {directory}", ("directory", directory));
        }

        if (p.Euid == 0 && p.Uid != 0 && !p.Escalated)
        {
            p.Escalated = true;
            Fire(Uid0Escalation, p, info, nowUnixMs, into, $"pid {p.Pid} ({exe}) runs with effective uid 0 for real uid {p.Uid}", ("previous_uid", Num(p.Uid)), ("previous_euid", Num(p.Uid)));
        }
    }

    /// <summary>A process whose real uid is not 0 gains effective uid 0 (a setuid-root binary, an exploit).
    /// A process not yet announced (forked, exec pending) is checked at its exec, with its new image.</summary>
    public void OnUidChange(TrackedProcess p, uint previousUid, uint previousEuid, Func<TrackedProcess, ProcessInfo> info, ulong nowUnixMs, List<ProcessAnomaly> into)
    {
        if (p.Euid != 0 || previousEuid == 0 || p.Uid == 0 && previousUid == 0 || p.Escalated || !p.Announced)
        {
            return;
        }

        p.Escalated = true;
        Fire(Uid0Escalation, p, info, nowUnixMs, into, $"pid {p.Pid} ({p.Executable}) gained effective uid 0 (was uid {previousUid}, euid {previousEuid})", ("previous_uid", Num(previousUid)), ("previous_euid", Num(previousEuid)));
    }

    public void OnPtraceAttach(TrackedProcess target, int tracerPid, TrackedProcess? tracer, Func<TrackedProcess, ProcessInfo> info, ulong nowUnixMs, List<ProcessAnomaly> into)
    {
        if (target.Tracer == tracerPid)
        {
            return; // one report per tracer (strace attaches every thread)
        }

        target.Tracer = tracerPid;
        var name = tracer?.Name ?? string.Empty;
        if (tracer is not null && Allows(PtraceAttach, tracer.Executable))
        {
            Interlocked.Increment(ref _allowed);
            return;
        }

        Fire(PtraceAttach, target, info, nowUnixMs, into, $"pid {tracerPid} ({name}) attached to pid {target.Pid} ({target.Name}) with ptrace", ("tracer_pid", Num((uint)tracerPid)), ("tracer_name", name), ("tracer_executable", tracer?.Executable ?? string.Empty));
    }

    /// <summary>A process renamed itself to something that is neither its executable's name nor argv[0]'s.</summary>
    public void OnComm(TrackedProcess p, Func<TrackedProcess, ProcessInfo> info, ulong nowUnixMs, List<ProcessAnomaly> into)
    {
        if (p.CommFlagged || p.Executable.Length == 0 || Matches(p.Comm, p.Executable) || (p.CommandLine.Length > 0 && Matches(p.Comm, p.CommandLine[0])))
        {
            return;
        }

        p.CommFlagged = true;
        Fire(CommMismatch, p, info, nowUnixMs, into, $"pid {p.Pid} ({p.Executable}) renamed itself '{p.Comm}'", ("comm", p.Comm));
    }

    private static bool Matches(string comm, string path)
    {
        var name = Path.GetFileName(path);
        return comm.Length > 0 && (name == comm || (comm.Length >= 15 && name.StartsWith(comm, StringComparison.Ordinal)));
    }

    private void Fire(string check, TrackedProcess p, Func<TrackedProcess, ProcessInfo> info, ulong nowUnixMs, List<ProcessAnomaly> into, string description, params (string Key, string Value)[] details)
    {
        if (!settings.AnomalyEnabled(check))
        {
            return;
        }

        if (Allows(check, p.Executable))
        {
            Interlocked.Increment(ref _allowed);
            return;
        }

        Interlocked.Increment(ref _fired);
        var anomaly = new ProcessAnomaly { Check = check, Description = description, Process = info(p), ObservedUnixMs = nowUnixMs, CollectorId = collectorId };
        foreach (var (key, value) in details)
        {
            anomaly.Details[key] = value;
        }

        into.Add(anomaly);
    }

    private bool Allows(string check, string executable) =>
        settings.AnomalyAllow.Any(a => a.Check == check && (executable == a.Path || (a.Path.EndsWith('/') && executable.StartsWith(a.Path, StringComparison.Ordinal))));

    /// <summary>/tmp, /dev/shm, /var/tmp, or a world-writable directory (without the sticky-bit excuse).</summary>
    internal static string? VolatileDirectory(string executable)
    {
        foreach (var d in VolatileDirectories)
        {
            if (executable.StartsWith(d, StringComparison.Ordinal))
            {
                return d.TrimEnd('/');
            }
        }

        var directory = Path.GetDirectoryName(executable);
        try
        {
            if (directory is { Length: > 0 } && (File.GetUnixFileMode(directory) & UnixFileMode.OtherWrite) != 0)
            {
                return directory;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }

        return null;
    }

    private static string Num(uint value) => value.ToString(CultureInfo.InvariantCulture);
}
