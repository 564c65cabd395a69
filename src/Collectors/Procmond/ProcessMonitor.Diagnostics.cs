using System.Globalization;
using DaemonEye.Protocol.Collector.V1;

namespace DaemonEye.Collectors.Procmond;

/// <summary>procmond's own entries in its Diagnostics answer (<c>daemoneye-cli collectors diagnostics procmond</c>).</summary>
internal sealed partial class ProcessMonitor
{
    /// <summary>Adds the scan loop's and the hasher's internals to the SDK's default answer.</summary>
    public void Describe(Diagnostics diagnostics)
    {
        ArgumentNullException.ThrowIfNull(diagnostics);
        var counters = table.Counters;
        diagnostics.QueueDepths["hash_queue"] = (ulong)hasher.Queued;
        diagnostics.QueueDepths["hash_queue_capacity"] = (ulong)settings.HashQueueCapacity;

        var c = diagnostics.Counters;
        c["scans"] = Unsigned(Interlocked.Read(ref counters.Scans));
        c["processes_tracked"] = (ulong)table.Count;
        c["last_scan_us"] = Unsigned(Interlocked.Read(ref counters.LastScanMicros));
        c["max_scan_us"] = Unsigned(Interlocked.Read(ref counters.MaxScanMicros));
        c["vanished_during_read"] = Unsigned(Interlocked.Read(ref counters.Vanished));
        c["permission_denied"] = Unsigned(Interlocked.Read(ref counters.PermissionDenied));
        c["read_errors"] = Unsigned(Interlocked.Read(ref counters.Malformed));
        c["events_published"] = Unsigned(Interlocked.Read(ref _published));
        c["integrity_events"] = Unsigned(Interlocked.Read(ref _integrityEvents));
        c["publish_failures"] = Unsigned(PublishFailures);
        c["hashes_computed"] = Unsigned(hasher.Computed);
        c["hash_cache_hits"] = Unsigned(hasher.CacheHits);
        c["hash_cache_entries"] = (ulong)hasher.Cached;
        c["hash_cache_evictions"] = Unsigned(hasher.Evictions);
        c["hash_queue_full"] = Unsigned(hasher.QueueFull);
        c["hash_errors"] = Unsigned(hasher.Errors);
        c["hash_skipped_too_large"] = Unsigned(hasher.TooLarge);

        // The settings in effect now (UpdateConfig may have changed them since the start), by their command-line keys.
        foreach (var (key, value) in settings.Describe())
        {
            diagnostics.Settings[key] = value;
        }

        if (table.LastScan is { } last)
        {
            diagnostics.Settings["last_scan_utc"] = last.UtcDateTime.ToString("O", CultureInfo.InvariantCulture);
        }
    }

    private static ulong Unsigned(long value) => value < 0 ? 0 : (ulong)value;
}
