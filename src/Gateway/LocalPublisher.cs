using DaemonEye.Grains;
using DaemonEye.Protocol.V1;
using Google.Protobuf;

namespace DaemonEye.Gateway;

/// <summary>Publishes on the bus from inside the agent (lifecycle events, alerts).</summary>
public interface IBusPublisher
{
    Task PublishAsync(string topic, ByteString payload, string contentType, CorrelationMetadata correlation, CancellationToken cancellationToken = default);
}

/// <summary>Routes an in-process publish exactly like one from a socket: one batch to the Topic grain.</summary>
internal sealed class LocalPublisher(IGrainFactory grains, TimeProvider time, GatewayStatistics stats) : IBusPublisher
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
        await grains.GetGrain<ITopicGrain>(topic).Publish(new PublishBatch(topic, bytes, [bytes.Length], 1, 0)).WaitAsync(cancellationToken);
        stats.AddPublished(1);
    }
}
