namespace DaemonEye;

/// <summary>The protocol's timestamps: nanoseconds since the Unix epoch.</summary>
public static class UnixTime
{
    public static ulong ToNanos(DateTimeOffset time) => (ulong)((time.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) * 100);

    public static DateTimeOffset FromNanos(ulong nanos) => DateTimeOffset.UnixEpoch.AddTicks((long)(nanos / 100));
}
