using Microsoft.Extensions.Logging;

namespace DaemonEye.Grains;

/// <summary>
/// One concrete topic. Numbers each message it receives (1, 2, 3... for the life of the agent),
/// counts them, and offers them to the connections whose subscriptions match, through the
/// in-process <see cref="IDeliverySink"/>.
/// </summary>
/// <remarks>
/// Not reentrant: <see cref="Publish"/> and <see cref="ApplySubscribers"/> complete without
/// awaiting, so turns never interleave anyway and the per-topic sequence is a plain counter.
/// </remarks>
internal sealed partial class TopicGrain(IDeliverySink sink, ILogger<TopicGrain> logger) : Grain, ITopicGrain
{
    private string _topic = string.Empty;
    private TopicSubscribers _subscribers = TopicSubscribers.Empty;
    private ulong _sequence;
    private ulong _published;
    private ulong _delivered;
    private ulong _dropped;

    private ISubscriptionRegistryGrain Registry => GrainFactory.GetGrain<ISubscriptionRegistryGrain>(RegistryGrain.Key);

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        _topic = this.GetPrimaryKeyString();
        var registration = await Registry.RegisterTopic(_topic);
        _sequence = registration.LastSequence;
        Apply(registration.Subscribers);
        LogActivated(logger, _topic, _subscribers.Targets.Length, _sequence);
    }

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        if (reason.ReasonCode == DeactivationReasonCode.ShuttingDown)
        {
            // The registry goes down with the silo; there is no next activation to resume.
            return;
        }

        try
        {
            await Registry.UnregisterTopic(_topic, _sequence);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // The registry only loses the sequence to resume from; numbering then restarts at 1.
            LogUnregisterFailed(logger, _topic, ex);
        }
    }

    public Task Publish(PublishBatch batch)
    {
        var count = batch.Count;
        var first = _sequence + 1;
        _sequence += (ulong)count;
        _published += (ulong)count;

        foreach (var target in _subscribers.Targets)
        {
            var accepted = sink.Deliver(target, batch, first);
            if (accepted < 0)
            {
                // The connection closed; the registry drops its subscriptions as the gateway reports it.
                continue;
            }

            _delivered += (ulong)accepted;
            _dropped += (ulong)(count - accepted);
        }

        return Task.CompletedTask;
    }

    public Task ApplySubscribers(TopicSubscribers subscribers)
    {
        Apply(subscribers);
        return Task.CompletedTask;
    }

    public Task<TopicStats> GetStats() =>
        Task.FromResult(new TopicStats(_topic, _published, _delivered, _dropped, _subscribers.Targets.Sum(t => t.SubscriptionIds.Length), _sequence));

    private void Apply(TopicSubscribers subscribers)
    {
        // Sets can arrive out of order when subscriptions change concurrently; the newest wins.
        if (subscribers.Generation >= _subscribers.Generation)
        {
            _subscribers = subscribers;
        }
    }

    [LoggerMessage(EventId = 1100, Level = LogLevel.Debug, Message = "Topic {Topic} activated with {Connections} subscribed connections, resuming after sequence {Sequence}")]
    private static partial void LogActivated(ILogger logger, string topic, int connections, ulong sequence);

    [LoggerMessage(EventId = 1101, Level = LogLevel.Warning, Message = "Topic {Topic} could not report its last sequence to the registry on deactivation")]
    private static partial void LogUnregisterFailed(ILogger logger, string topic, Exception exception);
}
