using DaemonEye.Protocol.Filesystem.V1;

namespace DaemonEye.Collectors.Fsmond;

/// <summary>Bulk windows: per process, files touched within bulk_window_ms; a summary when one crosses bulk_threshold, and its totals when the window ends.</summary>
internal sealed partial class FileEventPipeline
{
    private const int SamplePaths = 16;
    private readonly Dictionary<int, BulkWindow> _bulk = [];
    private long _reportedDrops;

    /// <summary>Counts <paramref name="e"/> in its process's window; false when it is to be counted there instead of published.</summary>
    private bool CountBulk(FileEvent e)
    {
        var pid = (int)e.Actor.Pid;
        var now = _time.GetUtcNow();
        if (!_bulk.TryGetValue(pid, out var window) || now - window.Start >= _settings.BulkWindow)
        {
            if (window is not null)
            {
                CloseWindow(window);
            }

            window = new BulkWindow(e.Actor, now);
            _bulk[pid] = window;
        }

        window.Summary.Events++;
        switch (e.Kind)
        {
            case FileEventKind.Created: window.Summary.Created++; break;
            case FileEventKind.Modified: window.Summary.Modified++; break;
            case FileEventKind.Deleted: window.Summary.Deleted++; break;
            case FileEventKind.Moved: window.Summary.Moved++; break;
            default: window.Summary.Attributes++; break;
        }

        if (window.Summary.SamplePaths.Count < SamplePaths)
        {
            window.Summary.SamplePaths.Add(e.Path.Length > 0 ? e.Path : e.NewPath);
        }

        var over = window.Summary.Events > (ulong)_settings.BulkThreshold;
        if (over && !window.Crossed)
        {
            window.Crossed = true;
            EmitBulk(window, final: false);
        }

        var publish = !(over && _settings.BulkSuppress) || e.IntegrityRoot;
        if (publish)
        {
            window.Summary.Published++;
        }
        else
        {
            window.Summary.Suppressed++;
        }

        return publish;
    }

    /// <summary>
    /// Closes windows that have ended (their final summaries) and reports drops since the last call as
    /// an EVENTS_DROPPED anomaly. The monitor calls it on a timer; tests call it after advancing time.
    /// </summary>
    public void Tick()
    {
        lock (_lock)
        {
            var now = _time.GetUtcNow();
            foreach (var (pid, window) in _bulk.Where(b => now - b.Value.Start >= _settings.BulkWindow).ToList())
            {
                CloseWindow(window);
                _bulk.Remove(pid);
            }

            var drops = Counters.RateLimited + Interlocked.Read(ref Counters.QueueFull);
            if (drops > _reportedDrops)
            {
                var detail = $"{drops - _reportedDrops} file event(s) dropped since the last report (rate limit {_settings.MaxEventsPerSecond}/s: {Counters.RateLimited} in all; publish queue full: {Interlocked.Read(ref Counters.QueueFull)} in all)";
                var count = (ulong)(drops - _reportedDrops);
                _reportedDrops = drops;
                Counters.Anomalies++;
                Emit(AnomalyTopic, new FileAnomaly { Kind = AnomalyKind.EventsDropped, Detail = detail, Count = count, CollectorId = _collectorId, TimeUnixNanos = Now() });
            }
        }
    }

    private void CloseWindow(BulkWindow window)
    {
        if (window.Crossed)
        {
            EmitBulk(window, final: true);
        }
    }

    private void EmitBulk(BulkWindow window, bool final)
    {
        var summary = window.Summary.Clone();
        summary.Final = final;
        summary.Threshold = (uint)_settings.BulkThreshold;
        summary.WindowMs = (ulong)_settings.BulkWindow.TotalMilliseconds;
        summary.CollectorId = _collectorId;
        Counters.BulkSummaries++;
        Emit(BulkTopic, summary);
    }

    private sealed class BulkWindow(Actor actor, DateTimeOffset start)
    {
        public DateTimeOffset Start { get; } = start;

        public bool Crossed { get; set; }

        public FileBulk Summary { get; } = new() { Actor = actor, WindowStartUnixMs = (ulong)start.ToUnixTimeMilliseconds() };
    }
}
