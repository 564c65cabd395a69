namespace DaemonEye.Client;

/// <summary>
/// Optional per-message metadata for <see cref="BusClient.PublishAsync"/>. Everything left unset
/// is filled in by the SDK: a fresh correlation id (its own root), the next sequence number of the
/// topic's stream, and the publisher's wall clock.
/// </summary>
public sealed class PublishOptions
{
    /// <summary>Unique id of this message (at most 128 characters). Generated when null.</summary>
    public string? CorrelationId { get; init; }

    /// <summary>Id of the message or call that caused this one.</summary>
    public string? ParentCorrelationId { get; init; }

    /// <summary>Id of the chain's first message. When null: the correlation id for a message without
    /// a parent (it starts a chain), otherwise absent.</summary>
    public string? RootCorrelationId { get; init; }

    /// <summary>Publisher-assigned order; 0 lets the SDK number the topic's stream 1, 2, 3, ...</summary>
    public ulong SequenceNumber { get; init; }

    /// <summary>Optional workflow stage label ("scan", "aggregate", ...).</summary>
    public string? WorkflowStage { get; init; }

    /// <summary>Free-form tags, written in enumeration order.</summary>
    public IReadOnlyDictionary<string, string>? Tags { get; init; }

    /// <summary>Media type of the payload, e.g. "text/plain; charset=utf-8".</summary>
    public string? ContentType { get; init; }

    /// <summary>Creation time; null means the client's <see cref="TimeProvider"/> now.</summary>
    public DateTimeOffset? Timestamp { get; init; }
}
