using System.Reflection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace DaemonEye.Silo;

/// <summary>
/// Orleans' membership keeps a thread-pool stall detector (inside its <c>LocalSiloHealthMonitor</c>)
/// whose timer queues a callback to the thread pool every 100 ms, so that a silo probing another can
/// tell its own stalls from the other's failure. The agent is a cluster of one: it probes nobody.
/// Those ten wake-ups a second were half the thread-pool work items of an idle agent and, through the
/// pool's spinning after each, most of its idle CPU (docs/benchmarks.md, "Idle"). This stops that
/// timer once the silo has started. What still reads the detector (the local health check every
/// second) reads "no stall" without waiting; the asynchronous query that waits for a sample is only
/// made by probes of other silos. The members are internal to Orleans, so every step checks what it
/// finds: with an Orleans version that has moved them, nothing is changed and one line says so.
/// </summary>
internal sealed partial class StallDetectorTrim(IServiceProvider services, ILogger<StallDetectorTrim> logger) : IHostedService
{
    private const string MonitorInterface = "Orleans.Runtime.MembershipService.ILocalSiloHealthMonitor, Orleans.Runtime";

    /// <summary>What <see cref="Stop"/> did: null when the timer was stopped, else why not.</summary>
    public string? Outcome { get; private set; } = "not run";

    public Task StartAsync(CancellationToken cancellationToken)
    {
        Outcome = Stop(services);
        if (Outcome is null)
        {
            LogStopped(logger);
        }
        else
        {
            LogNotStopped(logger, Outcome);
        }

        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>Stops the stall detector's sampling timer; returns null when done, else what was not found.</summary>
    internal static string? Stop(IServiceProvider services)
    {
        if (Type.GetType(MonitorInterface, throwOnError: false) is not { } monitorType)
        {
            return "Orleans has no ILocalSiloHealthMonitor";
        }

        if (services.GetService(monitorType) is not { } monitor)
        {
            return "no ILocalSiloHealthMonitor is registered";
        }

        const BindingFlags Instance = BindingFlags.Instance | BindingFlags.NonPublic;
        if (monitor.GetType().GetField("_stallDetector", Instance)?.GetValue(monitor) is not { } detector)
        {
            return $"{monitor.GetType().Name} has no stall detector";
        }

        if (detector.GetType().GetField("_timer", Instance)?.GetValue(detector) is not ITimer timer)
        {
            return $"{detector.GetType().Name} has no timer";
        }

        return timer.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan) ? null : "its timer was already disposed";
    }

    [LoggerMessage(EventId = 30, Level = LogLevel.Debug, Message = "Orleans' thread-pool stall detector stopped: a single silo probes no other silo")]
    private static partial void LogStopped(ILogger logger);

    [LoggerMessage(EventId = 31, Level = LogLevel.Information, Message = "Orleans' thread-pool stall detector left running ({Reason}): the idle agent wakes its thread pool 10 times a second")]
    private static partial void LogNotStopped(ILogger logger, string reason);
}
