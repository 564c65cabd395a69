using DaemonEye.Protocol.V1;
using Google.Protobuf;

namespace DaemonEye.Client;

/// <summary>One RPC request being served by a collector handler.</summary>
public sealed class CollectorCall
{
    internal CollectorCall(RpcRequest request, ICollectorContext collector, IServiceProvider services)
    {
        Request = request;
        Collector = collector;
        Services = services;
    }

    public RpcRequest Request { get; }

    public RpcOperation Operation => Request.Operation;

    /// <summary>The call's correlation. Events published through <see cref="ICollectorContext.PublishAsync(string, ReadOnlyMemory{byte}, string?, CancellationToken)"/>
    /// while the handler runs are its children (same root).</summary>
    public CorrelationMetadata Correlation => Request.Correlation;

    /// <summary>When the caller gives up; null when the request carries no deadline.</summary>
    public DateTimeOffset? Deadline => Request.DeadlineUnixNanos == 0 ? null : UnixTime.FromNanos(Request.DeadlineUnixNanos);

    public ICollectorContext Collector { get; }

    public IServiceProvider Services { get; }

    /// <summary>The request payload as <typeparamref name="T"/>; a payload that does not parse fails
    /// the call with InvalidOperation.</summary>
    public T Payload<T>(MessageParser<T> parser)
        where T : IMessage<T>
    {
        ArgumentNullException.ThrowIfNull(parser);
        try
        {
            return parser.ParseFrom(Request.Payload);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new CollectorRpcException(RpcErrorKind.InvalidOperation, $"the {Operation} payload is not a valid {typeof(T).Name}: {e.Message}");
        }
    }
}

/// <summary>Thrown by a handler to answer with a specific error kind (any other exception answers
/// ExecutionError with its message).</summary>
public sealed class CollectorRpcException(RpcErrorKind kind, string message) : Exception(message)
{
    public RpcErrorKind Kind { get; } = kind;
}

/// <summary>The running collector, for handlers and the collector's own services.</summary>
public interface ICollectorContext
{
    string CollectorId { get; }

    /// <summary>Time since the collector host started.</summary>
    TimeSpan Uptime { get; }

    /// <summary>The collector's bus connection (connected once the host has started).</summary>
    BusClient Client { get; }

    /// <summary>The correlation of the RPC being served on this async flow, if any.</summary>
    CorrelationMetadata? CurrentCall { get; }

    /// <summary>Publishes an event. Inside an RPC handler, the event's parent is the call, its
    /// root is the call's root, and it carries the call's workflow stage and tags; elsewhere it
    /// starts its own chain.</summary>
    ValueTask PublishAsync(string topic, ReadOnlyMemory<byte> payload, string? contentType = null, CancellationToken cancellationToken = default);

    /// <summary>Publishes a protobuf message with content type
    /// <c>application/x-protobuf; messageType=&lt;full name&gt;</c>; correlation as above.</summary>
    ValueTask PublishAsync(string topic, IMessage message, CancellationToken cancellationToken = default);
}
