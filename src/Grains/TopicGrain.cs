using DaemonEye.Configuration;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DaemonEye.Grains;

/// <summary>
/// One concrete topic: the owner of its <see cref="TopicRoute"/> (sequence, counters, subscriber
/// set) in the silo's <see cref="TopicRoutes"/> table. The gateway publishes through the route
/// without calling the grain; the grain opens the route on activation (resuming the topic's
/// numbering from the registry), applies the subscriber sets the registry pushes, and, once the
/// topic has seen no publish for <c>broker.topic_idle_seconds</c>, retires the route and
/// deactivates, handing its last sequence back to the registry.
/// </summary>
/// <remarks>
/// Not reentrant: every method completes without awaiting except activation and deactivation,
/// which Orleans never interleaves with calls.
/// </remarks>
internal sealed partial class TopicGrain(TopicRoutes routes, IOptions<BrokerOptions> options, ILogger<TopicGrain> logger) : Grain, ITopicGrain
{
    private TopicRoute _route = null!;

    private ISubscriptionRegistryGrain Registry => GrainFactory.GetGrain<ISubscriptionRegistryGrain>(RegistryGrain.Key);

    private TimeSpan IdleAfter => TimeSpan.FromSeconds(options.Value.TopicIdleSeconds);

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        var topic = this.GetPrimaryKeyString();
        var registration = await Registry.RegisterTopic(topic);
        _route = routes.Open(topic, registration.Subscribers, registration.LastSequence);
        // Publishes do not reach the grain, so Orleans cannot tell a busy topic from an idle one:
        // the grain watches its route and keeps itself alive while the route is used.
        var period = IdleAfter / 2;
        this.RegisterGrainTimer(CheckIdleAsync, new GrainTimerCreationOptions(period, period) { KeepAlive = false });
        DelayDeactivation(IdleAfter);
        LogActivated(logger, topic, registration.Subscribers.Targets.Length, registration.LastSequence);
    }

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        var last = routes.Close(_route);
        if (reason.ReasonCode == DeactivationReasonCode.ShuttingDown)
        {
            // The registry goes down with the silo; there is no next activation to resume.
            return;
        }

        try
        {
            await Registry.UnregisterTopic(_route.Topic, last);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // The registry only loses the sequence to resume from; numbering then restarts at 1.
            LogUnregisterFailed(logger, _route.Topic, ex);
        }
    }

    /// <summary>Makes sure the route is open (the gateway calls this when it finds no route).</summary>
    public Task Open() => Task.CompletedTask;

    public Task Publish(PublishBatch batch)
    {
        // The route is open for as long as this activation lives (it retires only in OnDeactivateAsync).
        _route.TryPublish(batch);
        return Task.CompletedTask;
    }

    public Task ApplySubscribers(TopicSubscribers subscribers)
    {
        _route.Apply(subscribers);
        return Task.CompletedTask;
    }

    public Task<TopicStats> GetStats() => Task.FromResult(_route.Stats());

    private Task CheckIdleAsync(CancellationToken cancellationToken)
    {
        var idle = _route.Idle;
        if (idle >= IdleAfter)
        {
            LogIdle(logger, _route.Topic, idle.TotalSeconds);
            DeactivateOnIdle();
        }
        else
        {
            DelayDeactivation(IdleAfter);
        }

        return Task.CompletedTask;
    }

    [LoggerMessage(EventId = 1100, Level = LogLevel.Debug, Message = "Topic {Topic} activated with {Connections} subscribed connections, resuming after sequence {Sequence}")]
    private static partial void LogActivated(ILogger logger, string topic, int connections, ulong sequence);

    [LoggerMessage(EventId = 1101, Level = LogLevel.Warning, Message = "Topic {Topic} could not report its last sequence to the registry on deactivation")]
    private static partial void LogUnregisterFailed(ILogger logger, string topic, Exception exception);

    [LoggerMessage(EventId = 1102, Level = LogLevel.Debug, Message = "Topic {Topic} idle for {IdleSeconds:F0} s; releasing its state")]
    private static partial void LogIdle(ILogger logger, string topic, double idleSeconds);
}
