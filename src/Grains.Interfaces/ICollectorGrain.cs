namespace DaemonEye.Grains;

/// <summary>Lifecycle states of a supervised collector.</summary>
[GenerateSerializer, Alias("daemoneye.CollectorLifecycle")]
public enum CollectorLifecycle
{
    Registered,
    Starting,
    Running,
    Stopping,
    Stopped,
    Failed,
}

/// <summary>Health as judged from heartbeats.</summary>
[GenerateSerializer, Alias("daemoneye.CollectorHealthState")]
public enum CollectorHealthState
{
    /// <summary>Not running, so not judged.</summary>
    Unknown,
    Healthy,

    /// <summary>One heartbeat interval without a heartbeat.</summary>
    Degraded,

    /// <summary>Three heartbeat intervals without a heartbeat.</summary>
    Unhealthy,
}

/// <summary>Everything the agent knows about one collector at one moment.</summary>
[GenerateSerializer, Immutable, Alias("daemoneye.CollectorSnapshot")]
public sealed record CollectorSnapshot(
    [property: Id(0)] string Id,
    [property: Id(1)] CollectorLifecycle State,
    [property: Id(2)] CollectorHealthState Health,
    [property: Id(3)] int Pid,
    [property: Id(4)] int Restarts,
    [property: Id(5)] DateTimeOffset? LastHeartbeat,
    [property: Id(6)] string[] Capabilities,
    [property: Id(7)] string Reason,
    [property: Id(8)] DateTimeOffset StateSince);

/// <summary>
/// One collector (key: collector id): lifecycle state, health from heartbeats, pid, restart count,
/// capabilities. The supervisor drives it; time is always passed in, so the grain has no clock of
/// its own and tests control it completely.
/// </summary>
[Alias("daemoneye.ICollectorGrain")]
public interface ICollectorGrain : IGrainWithStringKey
{
    /// <summary>Moves to <paramref name="state"/>; returns the snapshot before and after.</summary>
    [Alias("Transition")]
    Task<CollectorTransition> Transition(CollectorLifecycle state, int pid, string reason, DateTimeOffset at);

    [Alias("RecordHeartbeat")]
    Task RecordHeartbeat(DateTimeOffset at);

    [Alias("SetCapabilities")]
    Task SetCapabilities(string[] capabilities);

    [Alias("SetRestarts")]
    Task SetRestarts(int restarts);

    /// <summary>Judges health at <paramref name="now"/> for heartbeats due every <paramref name="interval"/>.</summary>
    [Alias("EvaluateHealth")]
    Task<CollectorSnapshot> EvaluateHealth(DateTimeOffset now, TimeSpan interval);

    [Alias("GetSnapshot")]
    Task<CollectorSnapshot> GetSnapshot();
}

[GenerateSerializer, Immutable, Alias("daemoneye.CollectorTransition")]
public sealed record CollectorTransition(
    [property: Id(0)] CollectorSnapshot Before,
    [property: Id(1)] CollectorSnapshot After);

/// <summary>Keys the collector grain reads from Orleans' RequestContext.</summary>
public static class CollectorGrainContext
{
    /// <summary>Correlation id of the request that caused a call, for the grain's log lines.</summary>
    public const string CorrelationIdKey = "daemoneye.correlation_id";
}
