using DaemonEye.Collectors.Procmond.Realtime;
using DaemonEye.Native;
using DaemonEye.Native.Netlink;
using DaemonEye.Topics;
using Microsoft.Extensions.Logging;

namespace DaemonEye.Collectors.Procmond;

/// <summary>The real-time source: the kernel's process events, or polling when they cannot be had.</summary>
internal sealed partial class ProcessMonitor
{
    public const string AnomalyTopic = WellKnownTopics.ProcessAnomaly;

    /// <summary>Most events applied under the lock at a time, so a snapshot task is not kept waiting.</summary>
    private const int ApplyBatch = 1024;

    private ConnectorSource? _source;
    private string _pollReason = string.Empty;
    private long _anomalies;

    /// <summary>"connector" or "poll" (HealthCheck detail "source").</summary>
    public string Source => _source is null ? "poll" : "connector";

    public ConnectorSource? Connector => _source;

    /// <summary>Opens the connector before the baseline scan, so no process falls between the two.</summary>
    private void StartSource()
    {
        table.SupervisorPid = int.TryParse(Environment.GetEnvironmentVariable("DAEMONEYE_SUPERVISOR_PID"), out var supervisor) ? supervisor : 0;
        table.Anomalies = anomalies;
        if (!settings.UseConnector)
        {
            _pollReason = "the connector setting is 0";
            LogPolling(logger, _pollReason, settings.ScanInterval.TotalMilliseconds);
            return;
        }

        try
        {
            _source = new ConnectorSource(openConnector(settings.ConnectorReceiveBufferBytes), settings.EventQueueCapacity, logger);
            table.RealTime = true;
            LogConnector(logger, _source.Connector.Socket.KernelReceiveBufferBytes, settings.ScanInterval.TotalMilliseconds);
        }
        catch (KernelException e)
        {
            _pollReason = e.Message;
            LogPolling(logger, _pollReason, settings.ScanInterval.TotalMilliseconds);
        }
    }

    /// <summary>Scans on the timer; in connector mode also applies events as they come and
    /// reconciles at once when the source lost some.</summary>
    private async Task RunAsync(CancellationToken cancellationToken)
    {
        _timer = new PeriodicTimer(settings.ScanInterval, time);
        var tick = _timer.WaitForNextTickAsync(cancellationToken).AsTask();
        var events = _source?.Events;
        Task<bool>? ready = null;
        while (true)
        {
            if (events is not null)
            {
                ready ??= events.WaitToReadAsync(cancellationToken).AsTask();
                await Task.WhenAny(tick, ready).ConfigureAwait(false);
                if (ready.IsCompleted)
                {
                    if (!await ready.ConfigureAwait(false))
                    {
                        // The reader thread ended (logged): the scan carries on alone.
                        events = null;
                        table.RealTime = false;
                    }

                    ready = null;
                    await ApplyEventsAsync(cancellationToken).ConfigureAwait(false);
                }

                if (_source!.TakeReconciliation())
                {
                    LogReconciling(logger, _source.Connector.Socket.Overruns, _source.QueueFull, _source.Connector.Lost);
                    await ScanAndPublishAsync(cancellationToken).ConfigureAwait(false);
                }
            }
            else
            {
                await tick.ConfigureAwait(false);
            }

            if (tick.IsCompleted)
            {
                if (!await tick.ConfigureAwait(false))
                {
                    return;
                }

                // Events already queued first, so the scan does not report what the connector has in hand.
                await ApplyEventsAsync(cancellationToken).ConfigureAwait(false);
                await ScanAndPublishAsync(cancellationToken).ConfigureAwait(false);
                tick = _timer.WaitForNextTickAsync(cancellationToken).AsTask();
            }
        }
    }

    /// <summary>Applies what the queue holds and publishes the result, a batch at a time.</summary>
    internal async Task ApplyEventsAsync(CancellationToken cancellationToken)
    {
        if (_source is not { } source)
        {
            return;
        }

        while (true)
        {
            var changes = new ScanChanges();
            var applied = 0;
            await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                while (applied < ApplyBatch && source.Events.TryRead(out var e))
                {
                    applied++;
                    if (e.Kind != ProcEventKind.None)
                    {
                        table.Apply(e, changes);
                    }
                }
            }
            finally
            {
                _lock.Release();
            }

            await PublishChangesAsync(changes, cancellationToken).ConfigureAwait(false);
            if (applied < ApplyBatch)
            {
                return;
            }
        }
    }

    private async Task PublishChangesAsync(ScanChanges changes, CancellationToken cancellationToken)
    {
        foreach (var e in changes.Lifecycle)
        {
            await PublishAsync(LifecycleTopic, e, cancellationToken).ConfigureAwait(false);
        }

        foreach (var e in changes.Reparented)
        {
            await PublishAsync(TreeTopic, e, cancellationToken).ConfigureAwait(false);
        }

        foreach (var e in changes.Metadata)
        {
            await PublishAsync(MetadataTopic, e, cancellationToken).ConfigureAwait(false);
        }

        foreach (var (integrity, original, originalPath, current) in changes.Integrity)
        {
            await hasher.RequestIntegrityAsync(integrity, original, originalPath, current, cancellationToken).ConfigureAwait(false);
        }

        foreach (var e in changes.Anomalies)
        {
            Interlocked.Increment(ref _anomalies);
            LogAnomaly(logger, e.Check, e.Process?.Pid ?? 0, e.Description);
            await PublishAsync(AnomalyTopic, e, cancellationToken).ConfigureAwait(false);
        }
    }

    private void AddSourceDetails(IDictionary<string, string> d)
    {
        d["source"] = Source;
        if (_source is null)
        {
            d["poll_reason"] = _pollReason;
            return;
        }

        var c = _source.Connector;
        d["connector_events"] = Num(c.Events);
        d["connector_overruns"] = Num(c.Socket.Overruns);
        d["connector_lost_events"] = Num(c.Lost);
        d["connector_malformed"] = Num(c.Malformed + c.Socket.Malformed + c.Socket.Truncated);
        d["connector_queue_full"] = Num(_source.QueueFull);
        d["connector_queue_length"] = Num(_source.Events.CanCount ? _source.Events.Count : -1);
        d["connector_kernel_queue_bytes"] = Num(c.Socket.KernelReceiveBufferBytes);
        d["reconciliations"] = Num(_source.Reconciliations);
        d["reconciled_starts"] = Num(table.Events.ReconciledStarts);
        d["reconciled_exits"] = Num(table.Events.ReconciledExits);
        d["partial_execs"] = Num(table.Events.PartialExecs);
        d["exits_of_unknown_processes"] = Num(table.Events.UnknownExits);
        d["anomalies"] = Num(Interlocked.Read(ref _anomalies));
        d["anomalies_allow_listed"] = Num(anomalies.Allowed);
    }

    [LoggerMessage(EventId = 10, Level = LogLevel.Information, Message = "Source: connector (the kernel's process events, queue {QueueBytes} bytes); /proc scanned every {IntervalMs} ms to reconcile")]
    private static partial void LogConnector(ILogger logger, int queueBytes, double intervalMs);

    [LoggerMessage(EventId = 11, Level = LogLevel.Warning, Message = "Source: poll. The proc connector cannot be used ({Reason}); processes are found by scanning /proc every {IntervalMs} ms, so one that lives less than that can be missed")]
    private static partial void LogPolling(ILogger logger, string reason, double intervalMs);

    [LoggerMessage(EventId = 12, Level = LogLevel.Information, Message = "Reconciling after lost kernel events (overruns {Overruns}, queue full {QueueFull}, lost by sequence {Lost})")]
    private static partial void LogReconciling(ILogger logger, long overruns, long queueFull, long lost);

    [LoggerMessage(EventId = 13, Level = LogLevel.Warning, Message = "Anomaly {Check} on pid {Pid}: {Description}")]
    private static partial void LogAnomaly(ILogger logger, string check, uint pid, string description);
}
