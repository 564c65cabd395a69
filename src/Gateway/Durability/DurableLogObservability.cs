using System.Diagnostics.Metrics;
using System.Globalization;
using DaemonEye.Gateway.Health;
using DaemonEye.Gateway.Metrics;
using DaemonEye.Protocol.Ipc.V1;

namespace DaemonEye.Gateway.Durability;

/// <summary>
/// The durable log in metrics (meter <c>DaemonEye.Durable</c>, read when collected) and in
/// <c>daemoneye-cli health</c> ("durable_log"): Degraded while the log has refused a batch within
/// the last <see cref="RefusalWindow"/> (disk full, I/O error: those publishes were refused, not
/// delivered); Healthy otherwise, with its size, the refusals since start and any torn final
/// record truncated at start-up.
/// </summary>
internal sealed class DurableLogObservability : IAgentHealthContributor
{
    /// <summary>How long a refusal keeps the check Degraded.</summary>
    public static readonly TimeSpan RefusalWindow = TimeSpan.FromMinutes(5);

    private readonly DurableLog _log;
    private readonly TimeProvider _time;

    public DurableLogObservability(DurableLog log, IMeterFactory meters, TimeProvider time)
    {
        _log = log;
        _time = time;
        var meter = meters.Create(MetricNames.DurableMeter);
        meter.CreateObservableUpDownCounter(MetricNames.DurableMessages, () => _log.Stats().Messages, "{message}",
            "Messages held in the durable log now (after retention)");
        meter.CreateObservableUpDownCounter(MetricNames.DurableBytes, () => _log.Stats().Bytes, "By",
            "Bytes of Publish frames held in the durable log now");
        meter.CreateObservableCounter(MetricNames.DurableRefused, () => _log.Refused, "{message}",
            "Messages on durable topics refused because the log could not take them (disk full, I/O error), since start");
        meter.CreateObservableCounter(MetricNames.DurableTornTails, () => _log.TornTails, "{record}",
            "Torn final records found and truncated at start-up (0 or 1)");
        meter.CreateObservableCounter(MetricNames.DurableGroupCommits, () => _log.GroupCommits, "{commit}",
            "Commits of more than one batch (appends that queued behind a commit under way), since start");
        meter.CreateObservableCounter(MetricNames.DurableGroupedBatches, () => _log.GroupedBatches, "{batch}",
            "Batches committed in a group of more than one, since start");
        meter.CreateObservableCounter(MetricNames.DurableCheckpoints, () => _log.Checkpointer.Rounds, "{checkpoint}",
            "Rounds of the WAL checkpointer (off the append path), since start");
        meter.CreateObservableCounter(MetricNames.DurableCheckpointCatchUps, () => _log.Checkpointer.CatchUps, "{checkpoint}",
            "Checkpoints run with the writer held because the WAL passed its bound, since start (appends queue meanwhile)");
    }

    public Task<HealthCheckResult> CheckAsync(CancellationToken cancellationToken)
    {
        var stats = _log.Stats();
        var detail = string.Create(CultureInfo.InvariantCulture,
            $"{stats.Messages} message(s), {stats.Bytes} bytes, sequences {stats.FirstSequence}..{stats.LastSequence} in {_log.Path}; {stats.Refused} refused since start");
        if (stats.TornTails > 0 && _log.Torn is { } torn)
        {
            detail += string.Create(CultureInfo.InvariantCulture, $"; a torn final record ({torn.PartialBytes} bytes) was truncated at start-up");
        }

        var result = new HealthCheckResult { Name = "durable_log", Status = HealthStatus.Healthy, Detail = detail };
        if (_log.LastRefusal is { } last && _time.GetUtcNow() - last < RefusalWindow)
        {
            result.Status = HealthStatus.Degraded;
            result.Detail = string.Create(CultureInfo.InvariantCulture,
                $"the log refused a batch {(_time.GetUtcNow() - last).TotalSeconds:0} s ago (publishes on durable topics are refused while it cannot write: disk full or I/O error, see the agent's log); ") + detail;
        }

        return Task.FromResult(result);
    }
}
