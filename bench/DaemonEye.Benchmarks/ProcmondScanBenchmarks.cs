using System.Diagnostics;
using BenchmarkDotNet.Attributes;
using DaemonEye.Collectors.Procmond;
using DaemonEye.Collectors.Procmond.Proc;

namespace DaemonEye.Benchmarks;

/// <summary>
/// procmond's full scan of the real /proc with <see cref="ExtraProcesses"/> idle processes started
/// for the measurement (sleep, killed afterwards) on top of whatever the machine runs. One operation
/// is one scan of every process. Steady: every process already known (what each interval costs).
/// Cold: every process seen for the first time (the first scan after start: status, cmdline and the
/// executable's identity read for each, hashing requested). Hashing itself runs off the scan path
/// and is not measured here.
/// </summary>
/// <remarks>Not sealed: BenchmarkDotNet derives from benchmark classes.</remarks>
[MemoryDiagnoser]
public class ProcmondScanBenchmarks
{
    private readonly List<Process> _children = [];
    private ProcessTable _steady = null!;
    private TimeSpan _steadyCpu;
    private long _steadyScans;

    [Params(1000)]
    public int ExtraProcesses { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        for (var i = 0; i < ExtraProcesses; i++)
        {
            _children.Add(Process.Start(new ProcessStartInfo("sleep", "3600") { UseShellExecute = false })!);
        }

        _steady = NewTable();
        _steady.Scan();
        Console.WriteLine($"// processes in /proc: {_steady.Count}");
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        if (_steadyScans > 0)
        {
            // CPU time, not wall time: on a machine shared with other work, the wall time of a scan
            // includes waiting for a core.
            Console.WriteLine($"// steady scans: {_steadyScans}, CPU time per scan (process user+system): {_steadyCpu.TotalMilliseconds / _steadyScans:F2} ms");
        }

        foreach (var child in _children)
        {
            child.Kill();
            child.WaitForExit();
            child.Dispose();
        }
    }

    private static ProcessTable NewTable()
    {
        var settings = new ProcmondSettings { HashQueueCapacity = 1_000_000 };
        var hasher = new ExecutableHasher(settings.HashQueueCapacity, settings.HashCacheEntries, () => settings.HashMaxFileBytes);
        return new ProcessTable(new ProcReader(), hasher, new UserDirectory(), settings, TimeProvider.System, "bench");
    }

    [Benchmark(Description = "Scan, steady (all known)")]
    public int Steady()
    {
        var before = CpuTime();
        var n = _steady.Scan().Processes;
        _steadyCpu += CpuTime() - before;
        _steadyScans++;
        return n;
    }

    private static TimeSpan CpuTime()
    {
        using var self = Process.GetCurrentProcess();
        return self.TotalProcessorTime;
    }

    [Benchmark(Description = "Scan, cold (all new)")]
    public int Cold() => NewTable().Scan().Processes;
}
