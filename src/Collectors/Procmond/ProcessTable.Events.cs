using System.Text;
using DaemonEye.Collectors.Procmond.Proc;
using DaemonEye.Native.Netlink;
using DaemonEye.Protocol.Process.V1;

namespace DaemonEye.Collectors.Procmond;

/// <summary>Counters of the kernel's process events as the table applied them; read by HealthCheck.</summary>
internal sealed class EventCounters
{
    public long Applied;
    public long ThreadEvents;
    public long PartialExecs;
    public long UnknownExits;
    public long ReconciledStarts;
    public long ReconciledExits;
}

/// <summary>
/// The proc connector's events applied to the table, as they happen: fork (a tree edge; the child
/// is tracked with its parent's image until it execs), exec (/proc/&lt;pid&gt; read at once:
/// STARTED for a new process, EXECUTED for one already announced), exit (exit status and lifetime;
/// a child that never exec'd is announced first), uid/gid/sid/comm changes (metadata) and ptrace
/// attach; the anomaly checks run on each.
/// </summary>
internal sealed partial class ProcessTable
{
    /// <summary>The connector feeds the table: scans that find a start or an exit count it as missed.</summary>
    public bool RealTime { get; set; }

    public EventCounters Events { get; } = new();

    public AnomalyChecks? Anomalies { get; set; }

    /// <summary>The supervising agent's pid (DAEMONEYE_SUPERVISOR_PID): it and its descendants are self.</summary>
    public int SupervisorPid { get; set; }

    public void Apply(in ProcEvent e, ScanChanges changes)
    {
        var nowUnixMs = (ulong)_time.GetUtcNow().ToUnixTimeMilliseconds();
        Events.Applied++;
        switch (e.Kind)
        {
            case ProcEventKind.Fork when e.IsProcess:
                OnFork(e, nowUnixMs, changes);
                break;
            case ProcEventKind.Exec:
                OnExec(e.Tgid, nowUnixMs, changes);
                break;
            case ProcEventKind.Exit when e.IsProcess:
                OnExit(e, nowUnixMs, changes);
                break;
            case ProcEventKind.Uid or ProcEventKind.Gid when e.IsProcess:
                OnIds(e, nowUnixMs, changes);
                break;
            case ProcEventKind.Sid when e.IsProcess && _processes.TryGetValue(e.Tgid, out var leader):
                changes.Metadata.Add(Metadata(leader, MetadataChange.Session, nowUnixMs));
                break;
            case ProcEventKind.Comm when e.IsProcess:
                OnComm(e, nowUnixMs, changes);
                break;
            case ProcEventKind.Ptrace when e.TracerTgid != 0:
                OnPtrace(e, nowUnixMs, changes);
                break;
            default:
                Events.ThreadEvents++;
                break;
        }
    }

    private void OnFork(in ProcEvent e, ulong nowUnixMs, ScanChanges changes)
    {
        _processes.TryGetValue(e.ParentTgid, out var parent);
        var child = new TrackedProcess
        {
            Pid = e.Tgid,
            Ppid = e.ParentTgid,
            ForkNs = e.TimestampNs,
            StartUnixMs = nowUnixMs,
            Generation = _generation,
        };
        if (parent is not null)
        {
            // Until it execs, a child runs its parent's image.
            child.Name = parent.Name;
            child.Comm = parent.Comm;
            child.CommRaw = parent.CommRaw;
            child.ExeRaw = parent.ExeRaw;
            child.Executable = parent.Executable;
            child.ExeKey = parent.ExeKey;
            child.ExeDeleted = parent.ExeDeleted;
            child.CommandLine = parent.CommandLine;
            child.Uid = parent.Uid;
            child.Euid = parent.Euid;
            child.User = parent.User;
        }

        if (_reader.ReadStat(e.Tgid, _stat, out _, out var stat) == ReadOutcome.Ok)
        {
            child.StartTicks = stat.StartTicks;
            child.StartUnixMs = StartUnixMs(stat.StartTicks);
        }

        _processes[e.Tgid] = child;
        changes.Reparented.Add(new ProcessReparented
        {
            Pid = (uint)child.Pid,
            StartTimeUnixMs = child.StartUnixMs,
            Name = child.Name,
            Ppid = (uint)child.Ppid,
            ObservedUnixMs = nowUnixMs,
            CollectorId = _collectorId,
            Change = TreeChange.Forked,
        });
    }

    private void OnExec(int pid, ulong nowUnixMs, ScanChanges changes)
    {
        _processes.TryGetValue(pid, out var process);
        var missing = new List<string>(4);
        var statOutcome = _reader.ReadStat(pid, _stat, out var length, out var stat);
        if (statOutcome == ReadOutcome.Ok && process is not null && process.StartTicks != 0 && process.StartTicks != stat.StartTicks)
        {
            // A pid reused while an exit was in flight: the old one is gone.
            changes.Lifecycle.Add(Exited(process, null, nowUnixMs));
            process = null;
        }

        var isNew = process is null;
        process ??= new TrackedProcess { Pid = pid, StartUnixMs = nowUnixMs, Generation = _generation };
        _processes[pid] = process;
        if (statOutcome == ReadOutcome.Ok)
        {
            process.StartTicks = stat.StartTicks;
            process.StartUnixMs = StartUnixMs(stat.StartTicks);
            if (!stat.ParentUnknown)
            {
                process.Ppid = stat.Ppid;
            }
            else if (process.Ppid == 0)
            {
                // Being reaped, and no fork event named the parent: said, not guessed.
                missing.Add("ppid");
            }

            process.CommRaw = stat.Comm(_stat.AsSpan(0, length)).ToArray();
            process.Comm = Encoding.UTF8.GetString(process.CommRaw);
        }
        else
        {
            missing.Add("start_time");
            missing.Add("name");
            if (process.Ppid == 0)
            {
                missing.Add("ppid");
            }
        }

        // A zombie's cmdline is empty and its exe link is gone: that is data lost, not an empty command line.
        var zombie = statOutcome == ReadOutcome.Ok && stat.State is 'Z' or 'X';
        var linkLength = 0;
        var link = zombie ? ReadOutcome.Gone : _reader.ReadExeLink(pid, _link, out linkLength);
        if (link == ReadOutcome.Ok)
        {
            process.ExeRaw = _link.AsSpan(0, linkLength).ToArray();
            (process.Executable, process.ExeDeleted) = SplitLink(process.ExeRaw);
            if (_reader.StatExe(pid, out var key) == ReadOutcome.Ok)
            {
                process.ExeKey = key;
                if (!process.Executable.StartsWith("/memfd:", StringComparison.Ordinal))
                {
                    _hasher.Request(key, _reader.PathString(pid, "exe"));
                }
            }
        }
        else
        {
            process.ExeRaw = [];
            process.Executable = string.Empty;
            process.ExeKey = null;
            missing.Add("executable");
        }

        if (!zombie && _reader.ReadCommandLine(pid, _cmdline, out var args) == ReadOutcome.Ok && args.Length > 0)
        {
            process.CommandLine = args;
        }
        else
        {
            process.CommandLine = [];
            missing.Add("command_line");
        }

        if (_reader.ReadUids(pid, _status, out var uid, out var euid) == ReadOutcome.Ok)
        {
            process.Uid = uid;
            process.Euid = euid;
            process.User = _users.NameOf(uid);
        }
        else if (isNew)
        {
            missing.Add("uid");
        }

        process.Name = ProcParsers.CompleteName(process.CommRaw, process.Executable, process.CommandLine) ?? process.Comm;
        process.Missing = missing.Count > 0 ? [.. missing] : null;
        if (missing.Count > 0)
        {
            Events.PartialExecs++;
        }

        var kind = process.Announced ? ProcessLifecycleKind.Executed : ProcessLifecycleKind.Started;
        process.Announced = true;
        var info = Info(process);
        FillStdio([info]); // descriptors 0-2 as the exec left them: a shell on a socket is visible in the event itself
        changes.Lifecycle.Add(new ProcessLifecycle { Kind = kind, Process = info, ObservedUnixMs = nowUnixMs, CollectorId = _collectorId, Source = "connector" });
        if (process.Executable.StartsWith("/memfd:", StringComparison.Ordinal))
        {
            changes.Integrity.Add((new ProcessIntegrity
            {
                Kind = IntegrityKind.Memfd,
                Pid = (uint)pid,
                StartTimeUnixMs = process.StartUnixMs,
                Name = process.Name,
                Executable = process.Executable,
                ObservedUnixMs = nowUnixMs,
                CollectorId = _collectorId,
            }, null, string.Empty, null));
        }

        Anomalies?.OnExec(process, Info, nowUnixMs, changes.Anomalies);
    }

    private void OnExit(in ProcEvent e, ulong nowUnixMs, ScanChanges changes)
    {
        if (!_processes.Remove(e.Tgid, out var process))
        {
            // Started before procmond, exited before the baseline read it, or already reported gone by a scan.
            Events.UnknownExits++;
            process = new TrackedProcess { Pid = e.Tgid, Ppid = e.ParentTgid, Missing = ["start_time", "name", "executable", "command_line", "uid"], Announced = true };
        }

        if (process.Ppid == 0 && e.ParentTgid != 0 && process.Missing is { } missing && missing.Contains("ppid"))
        {
            // The exit event names the parent that the exec's read of /proc could not.
            process.Ppid = e.ParentTgid;
            process.Missing = missing.Length > 1 ? [.. missing.Where(m => m != "ppid")] : null;
        }

        if (!process.Announced)
        {
            // Forked and never exec'd: announced now, with the image it ran (its parent's).
            process.Announced = true;
            changes.Lifecycle.Add(new ProcessLifecycle { Kind = ProcessLifecycleKind.Started, Process = Info(process), ObservedUnixMs = nowUnixMs, CollectorId = _collectorId, Source = "connector" });
        }

        changes.Lifecycle.Add(Exited(process, e, nowUnixMs));
    }

    private ProcessLifecycle Exited(TrackedProcess process, ProcEvent? e, ulong nowUnixMs)
    {
        var exited = new ProcessLifecycle
        {
            Kind = ProcessLifecycleKind.Exited,
            Process = Info(process),
            ObservedUnixMs = nowUnixMs,
            CollectorId = _collectorId,
            Source = "connector",
        };
        if (e is { } exit)
        {
            exited.ExitStatusKnown = true;
            exited.ExitCode = exit.Exited ? exit.ExitStatus : 0;
            exited.ExitSignal = exit.TerminatingSignal;
            exited.CoreDumped = exit.CoreDumped;
            exited.LifetimeMs = process.ForkNs != 0 && exit.TimestampNs >= process.ForkNs
                ? (exit.TimestampNs - process.ForkNs) / 1_000_000
                : process.StartUnixMs != 0 && nowUnixMs > process.StartUnixMs ? nowUnixMs - process.StartUnixMs : 0;
        }

        return exited;
    }

    private void OnIds(in ProcEvent e, ulong nowUnixMs, ScanChanges changes)
    {
        if (!_processes.TryGetValue(e.Tgid, out var process))
        {
            return;
        }

        var uid = e.Kind == ProcEventKind.Uid;
        var metadata = Metadata(process, uid ? MetadataChange.Uid : MetadataChange.Gid, nowUnixMs);
        metadata.RealId = e.Real;
        metadata.EffectiveId = e.Effective;
        if (uid)
        {
            metadata.PreviousRealId = process.Uid;
            metadata.PreviousEffectiveId = process.Euid;
            var (previousUid, previousEuid) = (process.Uid, process.Euid);
            process.Uid = e.Real;
            process.Euid = e.Effective;
            process.User = _users.NameOf(e.Real);
            if (!ExecPending(process))
            {
                Anomalies?.OnUidChange(process, previousUid, previousEuid, Info, nowUnixMs, changes.Anomalies);
            }
        }

        changes.Metadata.Add(metadata);
    }

    /// <summary>
    /// Whether the process already runs a new image whose exec event is still on its way: the kernel
    /// sends the uid change of a setuid exec (commit_creds) before the exec. The escalation is then
    /// reported at the exec, with the image that caused it, not with the one before. Only asked when
    /// the effective uid becomes 0, which is rare.
    /// </summary>
    private bool ExecPending(TrackedProcess process)
    {
        if (process.Euid != 0 || process.ExeRaw.Length == 0)
        {
            return false;
        }

        if (_reader.ReadExeLink(process.Pid, _link, out var length) != ReadOutcome.Ok)
        {
            return false;
        }

        var now = _link.AsSpan(0, length);
        return !now.SequenceEqual(process.ExeRaw) && !SameImageDeleted(process.ExeRaw, now);
    }

    private void OnComm(in ProcEvent e, ulong nowUnixMs, ScanChanges changes)
    {
        if (!_processes.TryGetValue(e.Tgid, out var process) || e.Comm is null)
        {
            return;
        }

        // The name read at the exec may already be the new one (the process renamed itself before
        // its exec was handled): no change to publish then, but the kernel sends this event only for
        // a rename (prctl or /proc/<pid>/comm), never for an exec, so the check runs either way.
        if (e.Comm != process.Comm)
        {
            var metadata = Metadata(process, MetadataChange.Comm, nowUnixMs);
            metadata.PreviousComm = process.Comm;
            metadata.Comm = e.Comm;
            process.Comm = e.Comm;
            process.CommRaw = Encoding.UTF8.GetBytes(e.Comm);
            changes.Metadata.Add(metadata);
        }

        Anomalies?.OnComm(process, Info, nowUnixMs, changes.Anomalies);
    }

    private void OnPtrace(in ProcEvent e, ulong nowUnixMs, ScanChanges changes)
    {
        if (e.TracerTgid == e.Tgid || !_processes.TryGetValue(e.Tgid, out var target))
        {
            return;
        }

        _processes.TryGetValue(e.TracerTgid, out var tracer);
        Anomalies?.OnPtraceAttach(target, e.TracerTgid, tracer, Info, nowUnixMs, changes.Anomalies);
    }

    private ProcessMetadata Metadata(TrackedProcess p, MetadataChange change, ulong nowUnixMs) => new()
    {
        Pid = (uint)p.Pid,
        StartTimeUnixMs = p.StartUnixMs,
        Name = p.Name,
        CpuPercent = p.Cpu,
        RssBytes = p.RssBytes,
        Threads = (uint)p.Threads,
        ObservedUnixMs = nowUnixMs,
        CollectorId = _collectorId,
        Change = change,
    };

    /// <summary>procmond itself, the supervising agent and the agent's descendants (collectors).</summary>
    private bool IsSelf(TrackedProcess p)
    {
        if (p.Pid == Environment.ProcessId || (SupervisorPid != 0 && p.Pid == SupervisorPid))
        {
            return true;
        }

        var ppid = p.Ppid;
        for (var depth = 0; depth < 16 && ppid > 1; depth++)
        {
            if (ppid == SupervisorPid || ppid == Environment.ProcessId)
            {
                return true;
            }

            ppid = _processes.TryGetValue(ppid, out var parent) ? parent.Ppid : 0;
        }

        return false;
    }
}
