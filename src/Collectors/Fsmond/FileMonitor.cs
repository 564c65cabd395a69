using System.Globalization;
using DaemonEye.Client;
using DaemonEye.Protocol.Collector.V1;
using DaemonEye.Protocol.Filesystem.V1;
using DaemonEye.Protocol.Task.V1;
using DaemonEye.Protocol.V1;
using Google.Protobuf;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace DaemonEye.Collectors.Fsmond;

/// <summary>
/// fsmond's work as a hosted service: starts the <see cref="FileWatch"/>, publishes its output,
/// closes bulk windows and reports drops on a timer, and serves file.snapshot, file.hash,
/// HealthCheck and UpdateConfig.
/// </summary>
internal sealed partial class FileMonitor(
    ICollectorContext collector,
    FsmondSettings settings,
    TimeProvider time,
    ILogger<FileMonitor> logger) : BackgroundService
{
    public const string SnapshotTaskType = "file.snapshot";
    public const string HashTaskType = "file.hash";
    private static readonly TimeSpan TickInterval = TimeSpan.FromSeconds(5);
    private readonly TaskCompletionSource<FileWatch> _watch = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly object _configLock = new();
    private long _publishFailures;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var self = new HashSet<int> { Environment.ProcessId };
        if (int.TryParse(Environment.GetEnvironmentVariable("DAEMONEYE_SUPERVISOR_PID"), NumberStyles.None, CultureInfo.InvariantCulture, out var agent))
        {
            self.Add(agent);
        }

        using var watch = new FileWatch(settings, self, collector.CollectorId, time, logger);
        watch.Start();
        _watch.TrySetResult(watch);
        var selfPids = string.Join(", ", self);
        LogStarted(logger, collector.CollectorId, watch.SourceStatus, watch.Pipeline.Filter.Roots.Count, selfPids);
        using var ticker = time.CreateTimer(_ => watch.Pipeline.Tick(), null, TickInterval, TickInterval);
        try
        {
            await foreach (var item in watch.Output.Reader.ReadAllAsync(stoppingToken).ConfigureAwait(false))
            {
                try
                {
                    await collector.PublishAsync(item.Topic, item.Message, stoppingToken).ConfigureAwait(false);
                }
                catch (Exception e) when (e is BusException or ObjectDisposedException or InvalidOperationException)
                {
                    if (Interlocked.Increment(ref _publishFailures) == 1)
                    {
                        LogPublishFailed(logger, item.Topic, e.Message);
                    }
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>file.snapshot: the recent events, the integrity hashes, the counters. Parameter <c>limit</c>: newest N events only.</summary>
    public async ValueTask<IMessage> ExecuteSnapshotTaskAsync(TaskRequest task, CollectorCall call, CancellationToken cancellationToken)
    {
        var unknown = task.Parameters.Keys.Where(k => k != "limit").ToList();
        if (unknown.Count > 0)
        {
            throw new CollectorRpcException(RpcErrorKind.InvalidOperation, $"file.snapshot has no parameter(s) {string.Join(", ", unknown.Select(k => $"'{k}'"))}; known: limit");
        }

        var limit = int.MaxValue;
        if (task.Parameters.TryGetValue("limit", out var text) && (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out limit) || limit < 1))
        {
            throw new CollectorRpcException(RpcErrorKind.InvalidOperation, $"file.snapshot parameter 'limit' is '{text}'; allowed: a whole number of at least 1");
        }

        var watch = await _watch.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        var (events, truncated) = watch.Pipeline.Recent();
        var snapshot = new FileSnapshot
        {
            CollectorId = collector.CollectorId,
            TakenUnixMs = (ulong)time.GetUtcNow().ToUnixTimeMilliseconds(),
            Source = watch.Source.Name,
            Truncated = truncated || events.Count > limit,
            Run = watch.Pipeline.Run,
        };
        snapshot.Events.Add(events.Skip(Math.Max(0, events.Count - limit)));
        snapshot.Hashes.Add(watch.Pipeline.Hasher.Hashes());
        foreach (var (key, value) in Counters(watch))
        {
            snapshot.Counters[key] = (ulong)value;
        }

        return snapshot;
    }

    /// <summary>file.hash: parameter <c>path</c> (absolute): its SHA-256 now, or why there is none.</summary>
    public async ValueTask<IMessage> ExecuteHashTaskAsync(TaskRequest task, CollectorCall call, CancellationToken cancellationToken)
    {
        if (!task.Parameters.TryGetValue("path", out var path) || !path.StartsWith('/') || task.Parameters.Count != 1)
        {
            throw new CollectorRpcException(RpcErrorKind.InvalidOperation, "file.hash takes exactly one parameter, 'path': an absolute path");
        }

        var watch = await _watch.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        return await Task.Run(() => watch.Pipeline.Hasher.Hash(path), cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask<HealthCheckResponse> HealthAsync(CollectorCall call, CancellationToken cancellationToken)
    {
        var watch = await _watch.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        var healthy = watch.Failure is null;
        var response = new HealthCheckResponse
        {
            Healthy = healthy,
            Status = healthy ? $"ok; source: {watch.SourceStatus}" : $"the {watch.Source.Name} reader stopped: {watch.Failure!.Message}",
            UptimeMs = (ulong)collector.Uptime.TotalMilliseconds,
        };
        var d = response.Details;
        d["pid"] = Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
        d["source"] = watch.SourceStatus;
        foreach (var (key, value) in Counters(watch))
        {
            d[key] = value.ToString(CultureInfo.InvariantCulture);
        }

        foreach (var (key, value) in watch.Settings.Describe())
        {
            d["setting." + key] = value;
        }

        return response;
    }

    private IEnumerable<KeyValuePair<string, long>> Counters(FileWatch watch)
    {
        foreach (var pair in watch.Pipeline.Counters.All())
        {
            yield return pair;
        }

        yield return new("kernel_events", watch.Source.KernelEvents);
        yield return new("hashes_computed", watch.Pipeline.Hasher.Computed);
        yield return new("hash_queue_full", watch.Pipeline.Hasher.QueueFull);
        yield return new("rescans", watch.Pipeline.Hasher.Rescans);
        yield return new("publish_failures", Interlocked.Read(ref _publishFailures));
        if (watch.Source is Sources.InotifySource inotify)
        {
            yield return new("inotify_watches", inotify.Watches);
            yield return new("inotify_watch_failures", inotify.WatchFailures);
        }
    }

    /// <summary>UpdateConfig: the same keys as the command line; all or nothing; globs apply at once.</summary>
    public async ValueTask UpdateConfigAsync(UpdateConfigRequest request, CollectorCall call, CancellationToken cancellationToken)
    {
        var watch = await _watch.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        lock (_configLock)
        {
            var errors = new List<string>();
            var next = watch.Settings.Clone();
            next.Apply(request.Settings, errors, atStart: false);
            if (errors.Count > 0)
            {
                throw new CollectorRpcException(RpcErrorKind.InvalidOperation, string.Join("; ", errors));
            }

            watch.Reconfigure(next);
            var keys = string.Join(", ", request.Settings.Keys);
            LogReconfigured(logger, keys);
        }
    }

    [LoggerMessage(EventId = 10, Level = LogLevel.Information, Message = "fsmond {CollectorId}: source {Source}; {Roots} watch roots; own writes excluded for pids {SelfPids}")]
    private static partial void LogStarted(ILogger logger, string collectorId, string source, int roots, string selfPids);

    [LoggerMessage(EventId = 11, Level = LogLevel.Warning, Message = "Could not publish on {Topic}: {Reason} (further failures are counted in the HealthCheck details, not logged)")]
    private static partial void LogPublishFailed(ILogger logger, string topic, string reason);

    [LoggerMessage(EventId = 12, Level = LogLevel.Information, Message = "Settings changed: {Keys}")]
    private static partial void LogReconfigured(ILogger logger, string keys);
}
