using System.Globalization;
using DaemonEye.Client;
using DaemonEye.Collectors.Procmond.Realtime;
using DaemonEye.Protocol.Collector.V1;
using DaemonEye.Protocol.Process.V1;
using DaemonEye.Protocol.Task.V1;
using DaemonEye.Protocol.V1;
using DaemonEye.Topics;
using Google.Protobuf;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace DaemonEye.Collectors.Procmond;

/// <summary>
/// procmond's work: scans on the configured interval, publishes what changed on
/// events.process.{lifecycle,metadata,tree,integrity,anomaly} (as the kernel reports them when the
/// proc connector is available: ProcessMonitor.Realtime.cs), the full snapshot on events.process.batch
/// at start and on request, and answers the process.snapshot task, HealthCheck and UpdateConfig.
/// Scans, snapshots and setting changes are serialized by one lock; hashing runs on its own worker.
/// </summary>
internal sealed partial class ProcessMonitor(
    ICollectorContext collector,
    ProcmondSettings settings,
    ExecutableHasher hasher,
    ProcessTable table,
    TimeProvider time,
    AnomalyChecks anomalies,
    OpenProcConnector openConnector,
    ILogger<ProcessMonitor> logger) : BackgroundService
{
    public const string LifecycleTopic = WellKnownTopics.ProcessLifecycle;
    public const string MetadataTopic = WellKnownTopics.ProcessMetadata;
    public const string TreeTopic = WellKnownTopics.ProcessTree;
    public const string IntegrityTopic = WellKnownTopics.ProcessIntegrity;
    public const string BatchTopic = WellKnownTopics.ProcessBatch;
    public const string SnapshotTaskType = "process.snapshot";

    private readonly SemaphoreSlim _lock = new(1, 1);
    private readonly TaskCompletionSource _baseline = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private PeriodicTimer? _timer;
    private long _published;
    private long _publishFailures;
    private long _integrityEvents;

    /// <summary>Completes when the baseline scan is done (the source is chosen before it).</summary>
    internal Task Baseline => _baseline.Task;

    /// <summary>Events that could not be published (the bus connection was down); counted, not retried.</summary>
    public long PublishFailures => Interlocked.Read(ref _publishFailures);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        hasher.IntegrityReady = PublishIntegrityAsync;
        var worker = Task.Run(() => hasher.RunAsync(stoppingToken), CancellationToken.None);
        try
        {
            StartSource();
            await _lock.WaitAsync(stoppingToken).ConfigureAwait(false);
            ProcessSnapshot startup;
            try
            {
                var baseline = table.Scan();
                startup = Snapshot(baseline, "startup");
            }
            finally
            {
                _lock.Release();
            }

            _baseline.TrySetResult();
            LogStarted(logger, collector.CollectorId, startup.Processes.Count, (long)startup.ScanDurationUs, settings.ScanInterval.TotalMilliseconds);
            await PublishBatchAsync(startup, stoppingToken).ConfigureAwait(false);

            await RunAsync(stoppingToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        finally
        {
            _source?.Dispose();
            await worker.ConfigureAwait(false);
        }
    }

    private async Task<ScanChanges> ScanAndPublishAsync(CancellationToken cancellationToken)
    {
        ScanChanges changes;
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            changes = table.Scan();
        }
        finally
        {
            _lock.Release();
        }

        await PublishChangesAsync(changes, cancellationToken).ConfigureAwait(false);
        LogScan(logger, changes.Processes, (long)changes.Duration.TotalMicroseconds, changes.Lifecycle.Count, changes.Metadata.Count);
        return changes;
    }

    private ValueTask PublishIntegrityAsync(ProcessIntegrity integrity, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _integrityEvents);
        LogIntegrity(logger, integrity.Kind, integrity.Pid, integrity.Executable);
        return PublishAsync(IntegrityTopic, integrity, cancellationToken);
    }

    private async ValueTask PublishAsync(string topic, IMessage message, CancellationToken cancellationToken)
    {
        try
        {
            await collector.PublishAsync(topic, message, cancellationToken).ConfigureAwait(false);
            Interlocked.Increment(ref _published);
        }
        catch (Exception e) when (e is BusException or ObjectDisposedException or InvalidOperationException)
        {
            if (Interlocked.Increment(ref _publishFailures) == 1)
            {
                LogPublishFailed(logger, topic, e.Message);
            }
        }
    }

    private ProcessSnapshot Snapshot(ScanChanges? scan, string reason)
    {
        var snapshot = new ProcessSnapshot
        {
            TakenUnixMs = (ulong)(table.LastScan ?? time.GetUtcNow()).ToUnixTimeMilliseconds(),
            CollectorId = collector.CollectorId,
            Reason = reason,
            ScanDurationUs = (ulong)(scan?.Duration.TotalMicroseconds ?? table.Counters.LastScanMicros),
            Part = 1,
            Parts = 1,
        };
        snapshot.Processes.Add(table.Snapshot());
        return snapshot;
    }

    /// <summary>Publishes a snapshot on events.process.batch, in parts of at most max_batch_part_bytes.</summary>
    private async Task PublishBatchAsync(ProcessSnapshot snapshot, CancellationToken cancellationToken)
    {
        foreach (var part in SplitBatch(snapshot, settings.MaxBatchPartBytes))
        {
            await PublishAsync(BatchTopic, part, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// The parts of <paramref name="snapshot"/> for events.process.batch: each at most
    /// <paramref name="limit"/> bytes encoded (a single process larger than that gets a part of its
    /// own), numbered 1..n with parts = n, together holding every process once, in order. An empty
    /// snapshot is one part.
    /// </summary>
    internal static List<ProcessSnapshot> SplitBatch(ProcessSnapshot snapshot, int limit)
    {
        // Upper bounds of what encoding adds around the sizes CalculateSize gives: a repeated message
        // field's tag and length varint (1 + at most 5 bytes), and the part and parts fields set below
        // (2 x (tag + uint32 varint of at most 5 bytes)).
        const int PerProcessFraming = 8;
        const int PartNumbering = 16;
        var parts = new List<ProcessSnapshot>();
        ProcessSnapshot? part = null;
        var size = 0;
        foreach (var process in snapshot.Processes)
        {
            var bytes = process.CalculateSize() + PerProcessFraming;
            if (part is null || (size + bytes > limit && part.Processes.Count > 0))
            {
                part = snapshot.Clone();
                part.Processes.Clear();
                parts.Add(part);
                size = part.CalculateSize() + PartNumbering;
            }

            part.Processes.Add(process);
            size += bytes;
        }

        if (parts.Count == 0)
        {
            parts.Add(snapshot.Clone());
        }

        for (var i = 0; i < parts.Count; i++)
        {
            parts[i].Part = (uint)(i + 1);
            parts[i].Parts = (uint)parts.Count;
        }

        return parts;
    }

    /// <summary>The process.snapshot task: parameters <c>fresh</c> ("true": scan now, publishing what
    /// changed, instead of returning the last scan) and <c>publish</c> ("false": do not also publish it
    /// on events.process.batch).</summary>
    public async ValueTask<IMessage> ExecuteSnapshotTaskAsync(TaskRequest task, CollectorCall call, CancellationToken cancellationToken)
    {
        var fresh = Flag(task, "fresh", false);
        var publish = Flag(task, "publish", true);
        var unknown = task.Parameters.Keys.Where(k => k is not ("fresh" or "publish")).ToList();
        if (unknown.Count > 0)
        {
            throw new CollectorRpcException(RpcErrorKind.InvalidOperation, $"process.snapshot has no parameter(s) {string.Join(", ", unknown.Select(k => $"'{k}'"))}; known: fresh, publish");
        }

        // The baseline scan comes first, whatever arrives before it.
        await _baseline.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        ScanChanges? scan = fresh ? await ScanAndPublishAsync(cancellationToken).ConfigureAwait(false) : null;
        ProcessSnapshot snapshot;
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            snapshot = Snapshot(scan, "task");
            table.FillStdio(snapshot.Processes);
        }
        finally
        {
            _lock.Release();
        }

        if (publish)
        {
            await PublishBatchAsync(snapshot, cancellationToken).ConfigureAwait(false);
        }

        if (snapshot.CalculateSize() > settings.MaxBatchPartBytes)
        {
            // One answer is one frame: keep every process, drop what makes it too big.
            foreach (var process in snapshot.Processes)
            {
                process.CommandLine.Clear();
            }

            snapshot.CommandLinesOmitted = true;
        }

        return snapshot;
    }

    private static bool Flag(TaskRequest task, string name, bool fallback)
    {
        if (!task.Parameters.TryGetValue(name, out var value))
        {
            return fallback;
        }

        return value switch
        {
            "true" => true,
            "false" => false,
            _ => throw new CollectorRpcException(RpcErrorKind.InvalidOperation, $"process.snapshot parameter '{name}' is '{value}'; allowed: true, false"),
        };
    }

    public async ValueTask<HealthCheckResponse> HealthAsync(CollectorCall call, CancellationToken cancellationToken)
    {
        var counters = table.Counters;
        var last = table.LastScan;
        var stalledAfter = (settings.ScanInterval * 3) + TimeSpan.FromSeconds(2);
        var healthy = last is { } l && time.GetUtcNow() - l <= stalledAfter;
        var response = new HealthCheckResponse
        {
            Healthy = healthy,
            Status = healthy ? "ok" : last is null ? "first scan not done" : $"no scan for {(time.GetUtcNow() - last.Value).TotalSeconds:F1} s",
            UptimeMs = (ulong)collector.Uptime.TotalMilliseconds,
        };
        var d = response.Details;
        d["pid"] = Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
        d["processes"] = table.Count.ToString(CultureInfo.InvariantCulture);
        d["scans"] = Num(counters.Scans);
        d["last_scan_us"] = Num(counters.LastScanMicros);
        d["max_scan_us"] = Num(counters.MaxScanMicros);
        d["vanished_during_read"] = Num(counters.Vanished);
        d["permission_denied"] = Num(counters.PermissionDenied);
        d["read_errors"] = Num(counters.Malformed);
        d["hashes_computed"] = Num(hasher.Computed);
        d["hash_cache_entries"] = hasher.Cached.ToString(CultureInfo.InvariantCulture);
        d["hash_queue_length"] = hasher.Queued.ToString(CultureInfo.InvariantCulture);
        d["hash_queue_full"] = Num(hasher.QueueFull);
        d["hash_errors"] = Num(hasher.Errors);
        d["hash_skipped_too_large"] = Num(hasher.TooLarge);
        d["hash_cache_evictions"] = Num(hasher.Evictions);
        d["events_published"] = Num(Interlocked.Read(ref _published));
        d["integrity_events"] = Num(Interlocked.Read(ref _integrityEvents));
        d["publish_failures"] = Num(PublishFailures);
        AddSourceDetails(d);
        foreach (var (key, value) in settings.Describe())
        {
            d["setting." + key] = value;
        }

        await Task.CompletedTask.ConfigureAwait(false);
        return response;
    }

    /// <summary>UpdateConfig: the same keys as the command line (scan_interval_ms, ...); all or nothing.</summary>
    public async ValueTask UpdateConfigAsync(UpdateConfigRequest request, CollectorCall call, CancellationToken cancellationToken)
    {
        var errors = new List<string>();
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            settings.Apply(request.Settings, errors, atStart: false);
            if (errors.Count > 0)
            {
                throw new CollectorRpcException(RpcErrorKind.InvalidOperation, string.Join("; ", errors));
            }

            if (_timer is { } timer)
            {
                timer.Period = settings.ScanInterval;
            }
        }
        finally
        {
            _lock.Release();
        }
    }

    private static string Num(long value) => value.ToString(CultureInfo.InvariantCulture);

    public override void Dispose()
    {
        _timer?.Dispose();
        _lock.Dispose();
        base.Dispose();
    }

    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "procmond {CollectorId}: baseline of {Processes} processes in {ScanMicros} us; scanning every {IntervalMs} ms")]
    private static partial void LogStarted(ILogger logger, string collectorId, int processes, long scanMicros, double intervalMs);

    [LoggerMessage(EventId = 2, Level = LogLevel.Debug, Message = "Scan: {Processes} processes in {ScanMicros} us; {Lifecycle} lifecycle, {Metadata} metadata events")]
    private static partial void LogScan(ILogger logger, int processes, long scanMicros, int lifecycle, int metadata);

    [LoggerMessage(EventId = 3, Level = LogLevel.Warning, Message = "Integrity: {Kind} executable of pid {Pid}: {Executable}")]
    private static partial void LogIntegrity(ILogger logger, IntegrityKind kind, uint pid, string executable);

    [LoggerMessage(EventId = 4, Level = LogLevel.Warning, Message = "Could not publish on {Topic}: {Reason} (further failures are counted in the HealthCheck details, not logged)")]
    private static partial void LogPublishFailed(ILogger logger, string topic, string reason);
}
