using Microsoft.Extensions.Hosting;

namespace DaemonEye.Gateway.Durability;

/// <summary>Applies the durable log's retention (durability.max_age_seconds, durability.max_bytes) at start-up and every 10 seconds.</summary>
internal sealed class DurableLogRetention(DurableLog log, TimeProvider time) : BackgroundService
{
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(10);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Interval, time);
        do
        {
            log.EnforceRetention();
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }
}
