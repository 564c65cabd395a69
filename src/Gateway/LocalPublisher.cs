using DaemonEye.Grains;
using DaemonEye.Protocol.V1;
using Google.Protobuf;

namespace DaemonEye.Gateway;

/// <summary>Publishes on the bus from inside the agent (lifecycle events, alerts).</summary>
public interface IBusPublisher
{
    Task PublishAsync(string topic, ByteString payload, string contentType, CorrelationMetadata correlation, CancellationToken cancellationToken = default);
}

/// <summary>Routes an in-process publish exactly like one from a socket: through the topic's route, or its grain when none is open.</summary>
internal sealed class LocalPublisher(IGrainFactory grains, TopicRoutes routes, TimeProvider time, GatewayStatistics stats, Durability.DurableLog? durable = null) : IBusPublisher
{
    public async Task PublishAsync(string topic, ByteString payload, string contentType, CorrelationMetadata correlation, CancellationToken cancellationToken = default)
    {
        Topics.TopicRules.EnsureTopic(topic);
        var bytes = new Publish
        {
            Topic = topic,
            Payload = payload,
            ContentType = contentType,
            Correlation = correlation,
            TimestampUnixNanos = Rpc.RpcRouter.ToUnixNanos(time.GetUtcNow()),
        }.ToByteArray();
        var batch = new PublishBatch(topic, bytes, [bytes.Length], 1, 0);
        if (durable is not null && durable.IsDurable(topic))
        {
            try
            {
                await durable.AppendAsync(batch);
            }
            catch (Durability.DurableLogUnavailableException)
            {
                stats.AddLimitRefusal(Security.Limit.DurableLogUnavailable);
                throw;
            }
        }

        if (!routes.TryGet(topic, out var route) || !route.TryPublish(batch))
        {
            await grains.GetGrain<ITopicGrain>(topic).Publish(batch).WaitAsync(cancellationToken);
        }

        stats.AddPublished(1);
    }
}
