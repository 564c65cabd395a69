using System.Diagnostics;
using System.Text;
using DaemonEye.Collectors.Procmond.Proc;
using DaemonEye.Protocol.Process.V1;

namespace DaemonEye.Collectors.Procmond;

/// <summary>What one scan found changed.</summary>
internal sealed class ScanChanges
{
    public List<ProcessLifecycle> Lifecycle { get; } = [];

    public List<ProcessMetadata> Metadata { get; } = [];

    public List<ProcessReparented> Reparented { get; } = [];

    public List<ProcessAnomaly> Anomalies { get; } = [];

    /// <summary>Integrity findings with the file identities the hasher needs to complete them.</summary>
    public List<(ProcessIntegrity Event, FileKey? Original, string OriginalPath, FileKey? Current)> Integrity { get; } = [];

    public int Processes { get; set; }

    public TimeSpan Duration { get; set; }

    public bool Baseline { get; set; }
}

/// <summary>Counters of one table's life; read by HealthCheck.</summary>
internal sealed class ScanCounters
{
    public long Scans;
    public long Vanished;
    public long PermissionDenied;
    public long Malformed;
    public long LastScanMicros;
    public long MaxScanMicros;
}

/// <summary>
/// The processes procmond knows, and the scan that brings them up to date from /proc. A process is
/// (pid, start time): a pid reused within one interval is an exit and a start. A known process
/// costs one read of its stat and one readlink of its exe per scan; status, cmdline and the
/// executable's identity are read when it is first seen or when it execs (name or exe changed).
/// Races (a process gone between listing and reading) and permission-denied entries are counted,
/// never thrown. Not thread-safe: the owner serializes scans and snapshots.
/// </summary>
internal sealed partial class ProcessTable
{
    private const string DeletedSuffix = " (deleted)";
    private readonly ProcReader _reader;
    private readonly ExecutableHasher _hasher;
    private readonly UserDirectory _users;
    private readonly ProcmondSettings _settings;
    private readonly TimeProvider _time;
    private readonly string _collectorId;
    private readonly Dictionary<int, TrackedProcess> _processes = [];
    private readonly List<int> _pids = [];
    private readonly byte[] _stat = new byte[4096];
    private readonly byte[] _status = new byte[2048];
    private readonly byte[] _link = new byte[4096 + 16];
    private readonly long _clockTicks = Proc.Native.ClockTicksPerSecond;
    private readonly long _bootUnixMs;
    private readonly long _pageSize = Environment.SystemPageSize;
    private byte[] _cmdline;
    private long _generation;
    private long _lastScanTimestamp;

    public ProcessTable(ProcReader reader, ExecutableHasher hasher, UserDirectory users, ProcmondSettings settings, TimeProvider time, string collectorId)
    {
        _reader = reader;
        _hasher = hasher;
        _users = users;
        _settings = settings;
        _time = time;
        _collectorId = collectorId;
        _bootUnixMs = reader.ReadBootTime() * 1000;
        _cmdline = new byte[settings.MaxCommandLineBytes];
    }

    public ScanCounters Counters { get; } = new();

    public int Count => _processes.Count;

    public DateTimeOffset? LastScan { get; private set; }

    /// <summary>Reads /proc and returns what changed since the previous scan. The first scan is the
    /// baseline: it publishes no starts (the startup snapshot carries them).</summary>
    public ScanChanges Scan()
    {
        var started = Stopwatch.GetTimestamp();
        var now = _time.GetTimestamp();
        var nowUnixMs = (ulong)_time.GetUtcNow().ToUnixTimeMilliseconds();
        var elapsed = _lastScanTimestamp == 0 ? TimeSpan.Zero : _time.GetElapsedTime(_lastScanTimestamp, now);
        var generation = ++_generation;
        var changes = new ScanChanges { Baseline = generation == 1 };
        if (_cmdline.Length != _settings.MaxCommandLineBytes)
        {
            _cmdline = new byte[_settings.MaxCommandLineBytes];
        }

        _users.Refresh();
        _reader.ListPids(_pids);
        foreach (var pid in _pids)
        {
            ScanOne(pid, generation, elapsed, nowUnixMs, changes);
        }

        List<int>? exited = null;
        foreach (var (pid, process) in _processes)
        {
            if (process.Generation != generation)
            {
                (exited ??= []).Add(pid);
                changes.Lifecycle.Add(Lifecycle(ProcessLifecycleKind.Exited, process, nowUnixMs));
            }
        }

        exited?.ForEach(pid => _processes.Remove(pid));
        _lastScanTimestamp = now;
        LastScan = _time.GetUtcNow();
        changes.Processes = _processes.Count;
        changes.Duration = Stopwatch.GetElapsedTime(started);
        var micros = (long)changes.Duration.TotalMicroseconds;
        Counters.Scans++;
        Counters.LastScanMicros = micros;
        Counters.MaxScanMicros = Math.Max(Counters.MaxScanMicros, micros);
        return changes;
    }

    private void ScanOne(int pid, long generation, TimeSpan elapsed, ulong nowUnixMs, ScanChanges changes)
    {
        var outcome = _reader.ReadStat(pid, _stat, out var length, out var stat);
        if (!Tally(outcome))
        {
            return;
        }

        var data = _stat.AsSpan(0, length);
        _processes.TryGetValue(pid, out var process);
        if (process is not null && process.StartTicks == 0)
        {
            // Forked, seen by the connector, but gone from /proc before its stat could be read then.
            process.StartTicks = stat.StartTicks;
            process.StartUnixMs = StartUnixMs(stat.StartTicks);
        }

        if (process is not null && process.StartTicks != stat.StartTicks)
        {
            // The pid was reused within one interval: the old process exited.
            changes.Lifecycle.Add(Lifecycle(ProcessLifecycleKind.Exited, process, nowUnixMs));
            _processes.Remove(pid);
            process = null;
        }

        // The executable link: a kernel thread has none; a zombie's is gone (keep the last one).
        var linkLength = -1;
        if (!stat.IsKernelThread && stat.State != 'Z' && process?.ExeDenied != true)
        {
            var link = _reader.ReadExeLink(pid, _link, out linkLength);
            if (link == ReadOutcome.Gone && process is null)
            {
                Counters.Vanished++;
                return;
            }

            if (link != ReadOutcome.Ok)
            {
                // Counted once per process: a denied link stays denied, so it is not read again.
                Tally(link);
                linkLength = -1;
                if (link == ReadOutcome.Denied && process is not null)
                {
                    process.ExeDenied = true;
                }
            }
        }

        var isNew = process is null;
        var execed = false;
        if (process is null)
        {
            process = new TrackedProcess { Pid = pid, StartTicks = stat.StartTicks, StartUnixMs = StartUnixMs(stat.StartTicks), Ppid = stat.Ppid, Announced = true };
            _processes[pid] = process;
        }
        else if (linkLength >= 0 && !_link.AsSpan(0, linkLength).SequenceEqual(process.ExeRaw))
        {
            // Another executable under the same pid and start time: an exec. The same path gaining
            // " (deleted)" is not one (handled below).
            execed = !SameImageDeleted(process.ExeRaw, _link.AsSpan(0, linkLength));
        }

        process.Generation = generation;
        var renamed = false;
        if (isNew || execed || !stat.Comm(data).SequenceEqual(process.CommRaw))
        {
            // A new name alone (prctl PR_SET_NAME) is no event; it shows in later events and snapshots.
            process.CommRaw = stat.Comm(data).ToArray();
            process.Comm = Encoding.UTF8.GetString(process.CommRaw);
            renamed = true;
        }

        if (isNew || execed)
        {
            process.ExeDenied = linkLength < 0 && !stat.IsKernelThread && stat.State != 'Z';
            Details(process, stat, linkLength);
        }

        if (renamed)
        {
            // After Details: the executable and command line complete a comm the kernel cut at 15 bytes.
            process.Name = ProcParsers.CompleteName(process.CommRaw, process.Executable, process.CommandLine) ?? process.Comm;
        }

        // Deletion or replacement on disk of the running image: the link gains " (deleted)".
        if (linkLength >= 0 && !isNew && !execed && !_link.AsSpan(0, linkLength).SequenceEqual(process.ExeRaw))
        {
            process.ExeRaw = _link.AsSpan(0, linkLength).ToArray();
            var (path, deleted) = SplitLink(process.ExeRaw);
            process.Executable = path;
            if (deleted && !process.ExeDeleted)
            {
                process.ExeDeleted = true;
                CheckIntegrity(process, nowUnixMs, changes);
            }
        }

        if (!isNew && !execed && process.ExeKey is { } key && _hasher.TryGet(key) is null && !process.ExeDeleted)
        {
            // Hash (again) if an earlier request found the queue full.
            _hasher.Request(key, _reader.PathString(pid, "exe"));
        }

        // Parent (unknown from the stat of a process being reaped: that is no reparenting).
        if (stat.Ppid != process.Ppid && !stat.ParentUnknown)
        {
            changes.Reparented.Add(new ProcessReparented
            {
                Pid = (uint)pid,
                StartTimeUnixMs = process.StartUnixMs,
                Name = process.Name,
                PreviousPpid = (uint)process.Ppid,
                Ppid = (uint)stat.Ppid,
                ObservedUnixMs = nowUnixMs,
                CollectorId = _collectorId,
                Change = TreeChange.Reparented,
            });
            process.Ppid = stat.Ppid;
        }

        // Resources.
        var ticks = stat.UserTicks + stat.SystemTicks;
        if (isNew || elapsed <= TimeSpan.Zero)
        {
            var lifetimeSeconds = Math.Max(0.001, ((double)nowUnixMs - process.StartUnixMs) / 1000);
            process.Cpu = Math.Round(ticks / (double)_clockTicks / lifetimeSeconds * 100, 2);
        }
        else
        {
            process.Cpu = Math.Round((ticks - Math.Min(ticks, process.Ticks)) / (double)_clockTicks / elapsed.TotalSeconds * 100, 2);
        }

        process.Ticks = ticks;
        process.RssBytes = (ulong)(Math.Max(0, stat.RssPages) * _pageSize);
        process.Threads = stat.Threads;
        if (isNew)
        {
            process.PublishedCpu = process.Cpu;
            process.PublishedRss = process.RssBytes;
            process.PublishedThreads = process.Threads;
            if (!changes.Baseline)
            {
                changes.Lifecycle.Add(Lifecycle(ProcessLifecycleKind.Started, process, nowUnixMs));
            }

            if (process.ExeDeleted)
            {
                CheckIntegrity(process, nowUnixMs, changes);
            }
        }
        else
        {
            if (execed)
            {
                // A child the connector saw fork but not yet exec (its exec event still queued, or
                // lost) has never been announced: this is its start.
                changes.Lifecycle.Add(Lifecycle(process.Announced ? ProcessLifecycleKind.Executed : ProcessLifecycleKind.Started, process, nowUnixMs));
            }

            if (MetadataChanged(process))
            {
                process.PublishedCpu = process.Cpu;
                process.PublishedRss = process.RssBytes;
                process.PublishedThreads = process.Threads;
                changes.Metadata.Add(new ProcessMetadata
                {
                    Pid = (uint)pid,
                    StartTimeUnixMs = process.StartUnixMs,
                    Name = process.Name,
                    CpuPercent = process.Cpu,
                    RssBytes = process.RssBytes,
                    Threads = (uint)process.Threads,
                    ObservedUnixMs = nowUnixMs,
                    CollectorId = _collectorId,
                    Change = MetadataChange.Resources,
                });
            }
        }
    }

    private ulong StartUnixMs(ulong startTicks) => (ulong)(_bootUnixMs + ((long)startTicks * 1000 / _clockTicks));

    /// <summary>First sight or exec: uid, command line and the running image's identity.</summary>
    private void Details(TrackedProcess process, ProcStat stat, int linkLength)
    {
        var pid = process.Pid;
        if (_reader.ReadUids(pid, _status, out var uid, out var euid) is var u && Tally(u))
        {
            process.Uid = uid;
            process.Euid = euid;
            process.User = _users.NameOf(uid);
        }

        if (stat.IsKernelThread)
        {
            return;
        }

        if (_reader.ReadCommandLine(pid, _cmdline, out var args) is var c && Tally(c))
        {
            process.CommandLine = args;
        }

        if (linkLength >= 0)
        {
            process.ExeRaw = _link.AsSpan(0, linkLength).ToArray();
            (process.Executable, process.ExeDeleted) = SplitLink(process.ExeRaw);
            if (_reader.StatExe(pid, out var key) is var k && Tally(k))
            {
                process.ExeKey = key;
                _hasher.Request(key, _reader.PathString(pid, "exe"));
            }
        }
    }

    private void CheckIntegrity(TrackedProcess process, ulong nowUnixMs, ScanChanges changes)
    {
        FileKey? current = null;
        if (ProcReader.StatPath(process.Executable, out var key) == ReadOutcome.Ok)
        {
            current = key;
        }

        // Confirm through the running image: an unlinked file has no links left.
        if (_reader.StatExe(process.Pid, out var image) == ReadOutcome.Ok && image.Links != 0 && current is { } c && c.SameFile(image))
        {
            process.ExeDeleted = false;
            return;
        }

        var integrity = new ProcessIntegrity
        {
            Kind = current is null ? IntegrityKind.Deleted : IntegrityKind.Replaced,
            Pid = (uint)process.Pid,
            StartTimeUnixMs = process.StartUnixMs,
            Name = process.Name,
            Executable = process.Executable,
            ObservedUnixMs = nowUnixMs,
            CollectorId = _collectorId,
        };
        changes.Integrity.Add((integrity, process.ExeKey, _reader.PathString(process.Pid, "exe"), current));
    }

    private bool MetadataChanged(TrackedProcess p)
    {
        var s = _settings;
        var rssDelta = Math.Abs((long)p.RssBytes - (long)p.PublishedRss);
        return Math.Abs(p.Cpu - p.PublishedCpu) >= s.CpuThresholdPercent
            || (rssDelta >= s.RssThresholdMinBytes && rssDelta * 100.0 >= p.PublishedRss * s.RssThresholdPercent)
            || Math.Abs(p.Threads - p.PublishedThreads) >= s.ThreadsThreshold;
    }

    /// <summary>Counts a non-Ok outcome; true when Ok.</summary>
    private bool Tally(ReadOutcome outcome)
    {
        switch (outcome)
        {
            case ReadOutcome.Ok:
                return true;
            case ReadOutcome.Gone:
                Counters.Vanished++;
                return false;
            case ReadOutcome.Denied:
                Counters.PermissionDenied++;
                return false;
            default:
                Counters.Malformed++;
                return false;
        }
    }

    /// <summary>The same path, now with the kernel's " (deleted)" suffix: not an exec.</summary>
    private static bool SameImageDeleted(ReadOnlySpan<byte> before, ReadOnlySpan<byte> now) =>
        now.Length == before.Length + DeletedSuffix.Length && now.StartsWith(before) && now.EndsWith(" (deleted)"u8);

    internal static (string Path, bool Deleted) SplitLink(ReadOnlySpan<byte> link)
    {
        var text = Encoding.UTF8.GetString(link);
        return text.EndsWith(DeletedSuffix, StringComparison.Ordinal) ? (text[..^DeletedSuffix.Length], true) : (text, false);
    }

    private ProcessLifecycle Lifecycle(ProcessLifecycleKind kind, TrackedProcess process, ulong nowUnixMs)
    {
        if (RealTime)
        {
            // The connector should have reported it: the scan caught what it missed.
            _ = kind == ProcessLifecycleKind.Exited ? Events.ReconciledExits++ : Events.ReconciledStarts++;
        }

        process.Announced = true;
        var info = Info(process);
        if (kind != ProcessLifecycleKind.Exited)
        {
            // What descriptors 0-2 are at the start or exec (a socket: "socket:[inode]"), for event rules.
            FillStdio([info]);
        }

        return new()
        {
            Kind = kind,
            Process = info,
            ObservedUnixMs = nowUnixMs,
            CollectorId = _collectorId,
            Source = "scan",
        };
    }

    public ProcessInfo Info(TrackedProcess p)
    {
        var info = new ProcessInfo
        {
            Pid = (uint)p.Pid,
            Ppid = (uint)p.Ppid,
            Name = p.Name,
            Comm = p.Comm,
            Executable = p.Executable,
            Uid = p.Uid,
            User = p.User,
            StartTimeUnixMs = p.StartUnixMs,
            CpuPercent = p.Cpu,
            RssBytes = p.RssBytes,
            Threads = (uint)p.Threads,
            ExeSha256 = p.ExeKey is { } key ? _hasher.TryGet(key) ?? string.Empty : string.Empty,
            ExeDeleted = p.ExeDeleted,
            Euid = p.Euid,
            Self = IsSelf(p),
            Partial = p.Missing is { Length: > 0 },
        };
        info.CommandLine.Add(p.CommandLine);
        if (p.Missing is { Length: > 0 } missing)
        {
            info.MissingFields.Add(missing);
        }

        return info;
    }

    /// <summary>Fills in what each process's descriptors 0, 1 and 2 point at, read now (for task answers).</summary>
    public void FillStdio(IEnumerable<ProcessInfo> processes)
    {
        foreach (var process in processes)
        {
            var pid = (int)process.Pid;
            process.Stdin = _reader.ReadStdioLink(pid, 0, _link);
            process.Stdout = _reader.ReadStdioLink(pid, 1, _link);
            process.Stderr = _reader.ReadStdioLink(pid, 2, _link);
        }
    }

    /// <summary>Every known process as of the last scan, by pid.</summary>
    public IEnumerable<ProcessInfo> Snapshot() => _processes.Values.OrderBy(p => p.Pid).Select(Info);
}

/// <summary>One process as the table knows it.</summary>
internal sealed class TrackedProcess
{
    public int Pid;
    public ulong StartTicks;
    public ulong StartUnixMs;
    public int Ppid;
    /// <summary>The comm, completed when the kernel cut it (<see cref="ProcParsers.CompleteName"/>).</summary>
    public string Name = string.Empty;
    public string Comm = string.Empty;
    public byte[] CommRaw = [];
    public byte[] ExeRaw = [];
    public string Executable = string.Empty;
    public bool ExeDeleted;
    public bool ExeDenied;
    public FileKey? ExeKey;
    public string[] CommandLine = [];
    public uint Uid;
    public uint Euid;
    public string User = string.Empty;
    /// <summary>A lifecycle event (started) was published for it.</summary>
    public bool Announced;
    /// <summary>Kernel time (CLOCK_MONOTONIC ns) of its fork, when the connector saw it; 0 otherwise.</summary>
    public ulong ForkNs;
    /// <summary>Fields that could not be read (the process was gone): partial, named.</summary>
    public string[]? Missing;
    public bool Escalated;
    public int Tracer;
    public bool CommFlagged;
    public ulong Ticks;
    public double Cpu;
    public ulong RssBytes;
    public int Threads;
    public double PublishedCpu;
    public ulong PublishedRss;
    public int PublishedThreads;
    public long Generation;
}

/// <summary>uid → user name from /etc/passwd, re-read when the file changes.</summary>
internal sealed class UserDirectory(string path = "/etc/passwd")
{
    private Dictionary<uint, string> _names = [];
    private DateTime _stamp;

    public string NameOf(uint uid) => _names.TryGetValue(uid, out var name) ? name : string.Empty;

    public void Refresh()
    {
        try
        {
            var stamp = File.GetLastWriteTimeUtc(path);
            if (stamp != _stamp)
            {
                _names = ProcParsers.ParsePasswd(File.ReadAllText(path));
                _stamp = stamp;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // No names: uids still are reported.
        }
    }
}
