using DaemonEye.Protocol.V1;

namespace DaemonEye.Client;

/// <summary>
/// Where a durable consumer that does not exist yet starts. A consumer that exists resumes after its
/// last acknowledged message whatever the start position says.
/// </summary>
public readonly record struct DurableStartPosition
{
    private DurableStartPosition(DurableStart kind, ulong sequence, DateTimeOffset time)
    {
        Kind = kind;
        Sequence = sequence;
        Time = time;
    }

    /// <summary>Only messages logged after the subscription is acknowledged.</summary>
    public static DurableStartPosition NewOnly { get; } = new(DurableStart.NewOnly, 0, default);

    /// <summary>From log sequence <paramref name="sequence"/> (1: everything retained).</summary>
    public static DurableStartPosition FromSequence(ulong sequence) => new(DurableStart.FromSequence, sequence, default);

    /// <summary>From the first message logged at or after <paramref name="time"/>.</summary>
    public static DurableStartPosition FromTime(DateTimeOffset time) => new(DurableStart.FromTime, 0, time);

    public DurableStart Kind { get; }

    public ulong Sequence { get; }

    public DateTimeOffset Time { get; }
}

/// <summary>A durable subscription's consumer and its ack batching.</summary>
/// <param name="Consumer">The consumer's name (1-128 of A-Z, a-z, 0-9, '_', '-', '.').</param>
/// <param name="Start">Where the consumer starts when it does not exist yet.</param>
/// <param name="AckBatchSize">Acknowledgements gathered into one DurableAck frame (at most half of <see cref="BusSubscription.MaxInFlight"/>); <see cref="BusSubscription.FlushAcksAsync"/> sends the rest.</param>
public sealed record DurableConsumerOptions(string Consumer, DurableStartPosition Start, int AckBatchSize = 256);
