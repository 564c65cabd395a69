namespace DaemonEye.Grains;

/// <summary>
/// The delivery path from a Topic grain to the connections of the gateway, which lives in the
/// same process. Implemented by the gateway and registered in the silo's container; the grains
/// see only this interface (the seam that keeps the arrow Gateway -> Grains one way).
/// </summary>
/// <remarks>Implementations must not block: they buffer or drop (and count) and return.</remarks>
public interface IDeliverySink
{
    /// <summary>
    /// Offers messages of <paramref name="batch"/> to one connection, numbered from
    /// <paramref name="firstSequence"/>. Returns how many were accepted; the rest were dropped
    /// for that connection only, counted, and will be reported to it. A connection that no
    /// longer exists accepts nothing and returns -1.
    /// </summary>
    int Deliver(DeliveryTarget target, PublishBatch batch, ulong firstSequence);
}
