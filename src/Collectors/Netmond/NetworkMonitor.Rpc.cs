using System.Globalization;
using DaemonEye.Client;
using DaemonEye.Protocol.Collector.V1;
using DaemonEye.Protocol.Task.V1;
using DaemonEye.Protocol.V1;
using Google.Protobuf;

namespace DaemonEye.Collectors.Netmond;

/// <summary>netmond's answers: the network.snapshot task, HealthCheck and UpdateConfig.</summary>
internal sealed partial class NetworkMonitor
{
    /// <summary>The network.snapshot task: parameter <c>fresh</c> ("true": scan now, publishing what
    /// changed, instead of returning the last scan). The answer is the rule engine's tables
    /// connections and listening_ports.</summary>
    public async ValueTask<IMessage> ExecuteSnapshotTaskAsync(TaskRequest task, CollectorCall call, CancellationToken cancellationToken)
    {
        var unknown = task.Parameters.Keys.Where(k => k != "fresh").ToList();
        if (unknown.Count > 0)
        {
            throw new CollectorRpcException(RpcErrorKind.InvalidOperation, $"network.snapshot has no parameter(s) {string.Join(", ", unknown.Select(k => $"'{k}'"))}; known: fresh");
        }

        var fresh = task.Parameters.TryGetValue("fresh", out var value) ? value switch
        {
            "true" => true,
            "false" => false,
            _ => throw new CollectorRpcException(RpcErrorKind.InvalidOperation, $"network.snapshot parameter 'fresh' is '{value}'; allowed: true, false"),
        } : false;

        await _baseline.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        if (fresh)
        {
            await ScanAndPublishAsync(cancellationToken).ConfigureAwait(false);
        }

        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return table.Snapshot(NetworkNamespace);
        }
        finally
        {
            _lock.Release();
        }
    }

    public async ValueTask<HealthCheckResponse> HealthAsync(CollectorCall call, CancellationToken cancellationToken)
    {
        var c = table.Counters;
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
        d["network_namespace"] = NetworkNamespace.ToString(CultureInfo.InvariantCulture);
        d["sockets_tracked"] = table.Count.ToString(CultureInfo.InvariantCulture);
        d["scans"] = Num(c.Scans);
        d["last_scan_us"] = Num(c.LastScanMicros);
        d["max_scan_us"] = Num(c.MaxScanMicros);
        d["dumps_interrupted"] = Num(c.DumpsInterrupted);
        d["malformed_answers"] = Num(c.MalformedAnswers);
        d["close_notifications"] = _notifications;
        d["notifications_received"] = Num(_listener?.Notifications ?? 0);
        d["notification_overruns"] = Num(_listener?.Socket.Overruns ?? 0);
        d["notifications_malformed"] = Num(_listener?.Malformed ?? 0);
        d["unattributed_events"] = Num(c.Unattributed);
        d["closed_unseen"] = Num(c.ClosedUnseen);
        d["vanished"] = Num(c.Vanished);
        d["duplicate_closes"] = Num(c.DuplicateCloses);
        d["never_established"] = Num(c.NeverEstablished);
        d["unconnected_destroyed"] = Num(c.UnconnectedDestroyed);
        d["filtered_events"] = Num(c.Filtered);
        d["coalesced_events"] = Num(budget.Coalesced);
        d["inode_map_entries"] = table.InodeMap.Count.ToString(CultureInfo.InvariantCulture);
        d["inode_map_scans"] = Num(table.InodeMap.Scans);
        d["proc_fd_denied"] = Num(table.InodeMap.Denied);
        d["events_published"] = Num(Interlocked.Read(ref _published));
        d["publish_failures"] = Num(Interlocked.Read(ref _publishFailures));
        foreach (var (key, setting) in settings.Describe())
        {
            d["setting." + key] = setting;
        }

        await Task.CompletedTask.ConfigureAwait(false);
        return response;
    }

    /// <summary>UpdateConfig: the command line's keys (scan_interval_ms, ...); all or nothing.</summary>
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
}
