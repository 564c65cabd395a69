using DaemonEye.Protocol.V1;

namespace DaemonEye.Client;

/// <summary>The agent dropped messages for this connection (its outbound buffer was full).</summary>
/// <param name="Count">Dropped since the previous notice.</param>
/// <param name="ConnectionTotal">Dropped on the current connection since it was accepted (the agent's count).</param>
/// <param name="Total">Dropped for this client over all its connections.</param>
/// <param name="Reason">The agent's explanation.</param>
public sealed record BusDroppedEventArgs(ulong Count, ulong ConnectionTotal, long Total, string Reason);

/// <summary>The agent reported an error that no pending request was waiting for (e.g. INVALID_TOPIC for a publish).</summary>
public sealed record BusErrorEventArgs(ErrorCode Code, string Message, bool Fatal, uint RequestId);

/// <summary>
/// A buffered subscription's local buffer is full, so the client's reader stops reading the socket
/// until the application takes a message; meanwhile the agent buffers for this connection and, past
/// its limit, drops and counts (<see cref="BusClient.Dropped"/>). Raised once per stall.
/// </summary>
/// <param name="Pattern">The subscription's pattern.</param>
/// <param name="SubscriptionId">The agent's id for the subscription on the current connection.</param>
/// <param name="Capacity">The local buffer's size in messages (<see cref="BusClientOptions.SubscriptionBufferSize"/>).</param>
/// <param name="Stalls">The subscription's stalls so far, this one included (<see cref="BusSubscription.Stalls"/>).</param>
public sealed record BusSlowConsumerEventArgs(string Pattern, uint SubscriptionId, int Capacity, long Stalls);

/// <summary>The connection to the agent was lost.</summary>
/// <param name="Reason">Why, when known.</param>
/// <param name="LostFrames">Frames that were being written when the connection failed and may not have reached the agent.</param>
/// <param name="AbandonedMessages">Deliveries the agent had sent on this connection that a full subscription buffer could not
/// take when the connection ended, so the client dropped them (see <see cref="BusClient.AbandonedMessages"/>).</param>
public sealed record BusDisconnectedEventArgs(Exception? Reason, long LostFrames, long AbandonedMessages);

/// <summary>The client reconnected and restored its subscriptions.</summary>
public sealed record BusReconnectedEventArgs(string ConnectionId, int Attempts, int RestoredSubscriptions);

/// <summary>The agent answered a request with an Error.</summary>
public class BusException(ErrorCode code, string message, bool fatal = false, Exception? innerException = null)
    : Exception(message, innerException)
{
    public ErrorCode Code { get; } = code;

    public bool Fatal { get; } = fatal;
}

/// <summary>The agent could not be reached, or the connection was lost before a reply arrived.</summary>
public sealed class BusConnectionException(string message, Exception? innerException = null)
    : BusException(ErrorCode.Unspecified, message, fatal: false, innerException);
