namespace DaemonEye.Grains;

/// <summary>One subscription: the connection that holds it and its connection-scoped id.</summary>
[GenerateSerializer, Immutable, Alias("daemoneye.SubscriptionKey")]
public readonly record struct SubscriptionKey(
    [property: Id(0)] long ConnectionId,
    [property: Id(1)] uint SubscriptionId);

/// <summary>
/// A run of messages one connection published on one topic, in publish order: the raw encoded
/// <c>Publish</c> messages laid end to end in <see cref="Buffer"/>, message <c>i</c> ending at
/// <c>Ends[i]</c>. The bytes are never changed after construction, hence <see cref="ImmutableAttribute"/>:
/// Orleans passes the reference instead of copying it.
/// </summary>
[GenerateSerializer, Immutable, Alias("daemoneye.PublishBatch")]
public sealed class PublishBatch(string topic, byte[] buffer, int[] ends, int count, long publisherConnectionId, long readTimestamp = 0)
{
    [Id(0)] public string Topic { get; } = topic;

    [Id(1)] public byte[] Buffer { get; } = buffer;

    [Id(2)] public int[] Ends { get; } = ends;

    [Id(3)] public int Count { get; } = count;

    [Id(4)] public long PublisherConnectionId { get; } = publisherConnectionId;

    /// <summary>
    /// <see cref="System.Diagnostics.Stopwatch.GetTimestamp"/> when the gateway's socket read that held
    /// these messages returned (for the delivery latency metric); 0 for messages the agent published itself.
    /// </summary>
    [Id(5)] public long ReadTimestamp { get; } = readTimestamp;

    // Set on a batch whose arrays the publisher reuses once the routing call returns (see Borrowed);
    // not serialized: a batch that crossed a grain call is always its own.
    [NonSerialized]
    private bool _borrowed;

    [NonSerialized]
    private PublishBatch? _stable;

    /// <summary>
    /// A batch over the publisher's own buffers, valid only until the call that routes it returns: no
    /// copy for a batch that is delivered on the spot (the common case). Whoever keeps it longer (a
    /// queued delivery, a grain call) keeps <see cref="Stable"/> instead.
    /// </summary>
    public static PublishBatch Borrowed(string topic, byte[] buffer, int[] ends, int count, long publisherConnectionId, long readTimestamp) =>
        new(topic, buffer, ends, count, publisherConnectionId, readTimestamp) { _borrowed = true };

    /// <summary>This batch, or for a borrowed one a copy of its messages made once (the route's lock serializes callers).</summary>
    public PublishBatch Stable()
    {
        if (!_borrowed)
        {
            return this;
        }

        var length = Count == 0 ? 0 : Ends[Count - 1];
        return _stable ??= new PublishBatch(Topic, Buffer.AsSpan(0, length).ToArray(), Ends.AsSpan(0, Count).ToArray(), Count, PublisherConnectionId, ReadTimestamp);
    }

    /// <summary>The raw encoded Publish message at <paramref name="index"/>.</summary>
    public ReadOnlyMemory<byte> Message(int index)
    {
        var start = index == 0 ? 0 : Ends[index - 1];
        return Buffer.AsMemory(start, Ends[index] - start);
    }
}

/// <summary>One connection's subscriptions that match a topic.</summary>
[GenerateSerializer, Immutable, Alias("daemoneye.DeliveryTarget")]
public sealed record DeliveryTarget(
    [property: Id(0)] long ConnectionId,
    [property: Id(1)] uint[] SubscriptionIds);

/// <summary>
/// Everything a Topic grain needs to deliver: the targets matching its topic as of registry
/// generation <see cref="Generation"/>. A Topic grain ignores a set older than the one it holds.
/// </summary>
[GenerateSerializer, Immutable, Alias("daemoneye.TopicSubscribers")]
public sealed record TopicSubscribers(
    [property: Id(0)] long Generation,
    [property: Id(1)] DeliveryTarget[] Targets)
{
    public static TopicSubscribers Empty { get; } = new(0, []);
}

/// <summary>What the registry tells a Topic grain that has just activated.</summary>
[GenerateSerializer, Immutable, Alias("daemoneye.TopicRegistration")]
public sealed record TopicRegistration(
    [property: Id(0)] TopicSubscribers Subscribers,
    [property: Id(1)] ulong LastSequence);

/// <summary>Outcome of a subscribe request. <c>Limit</c> names the configuration key of the limit that refused it, if one did.</summary>
[GenerateSerializer, Immutable, Alias("daemoneye.SubscribeResult")]
public sealed record SubscribeResult(
    [property: Id(0)] bool Accepted,
    [property: Id(1)] string? Error,
    [property: Id(2)] int TotalSubscriptions,
    [property: Id(3)] string? Limit = null);

/// <summary>Counters of one topic.</summary>
[GenerateSerializer, Immutable, Alias("daemoneye.TopicStats")]
public sealed record TopicStats(
    [property: Id(0)] string Topic,
    [property: Id(1)] ulong Published,
    [property: Id(2)] ulong Delivered,
    [property: Id(3)] ulong Dropped,
    [property: Id(4)] int Subscribers,
    [property: Id(5)] ulong LastSequence);

/// <summary>Counters of the subscription registry.</summary>
[GenerateSerializer, Immutable, Alias("daemoneye.RegistryStats")]
public sealed record RegistryStats(
    [property: Id(0)] int Subscriptions,
    [property: Id(1)] int Connections,
    [property: Id(2)] int ActiveTopics,
    [property: Id(3)] long Generation,
    [property: Id(4)] int MaxSubscribers);
