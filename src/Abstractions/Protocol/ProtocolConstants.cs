namespace DaemonEye.Protocol;

/// <summary>Numbers both ends of the bus protocol agree on.</summary>
public static class ProtocolConstants
{
    /// <summary>The protocol version this build speaks (proto package daemoneye.bus.v1).</summary>
    public const uint Version = 1;

    /// <summary>Longest client id accepted in Hello.</summary>
    public const int MaxClientIdLength = 128;

    /// <summary>Longest correlation id (correlation, parent or root) accepted.</summary>
    public const int MaxCorrelationIdLength = 128;

    /// <summary>
    /// Largest unacknowledged-message window of a durable subscription: the most a client may ask for in
    /// <c>Subscribe.max_in_flight</c> and the most <c>durability.max_ack_pending</c> may configure.
    /// </summary>
    public const int MaxDurableInFlight = 1_000_000;
}
