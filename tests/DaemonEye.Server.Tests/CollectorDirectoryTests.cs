using DaemonEye.Gateway.Collectors;
using DaemonEye.Gateway.Rpc;
using Microsoft.Extensions.Time.Testing;

namespace DaemonEye.Server.Tests;

/// <summary>
/// The one collector model: presence, liveness (one rule on the directory's one timer, driven by the
/// fake clock), lifecycle and restart state, and the changes its observers are told of.
/// </summary>
public sealed class CollectorDirectoryTests : IDisposable
{
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(2);
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 1, 12, 0, 0, TimeSpan.Zero));
    private readonly CollectorDirectory _directory;
    private readonly Recorder _observer = new();

    public CollectorDirectoryTests()
    {
        _directory = new CollectorDirectory(_time, Interval);
        _directory.Attach(_observer);
    }

    public void Dispose() => _directory.Dispose();

    [Fact]
    public void Silent_for_more_than_one_interval_is_Degraded_for_three_Unhealthy_and_a_heartbeat_heals_at_once()
    {
        _directory.Connected(new CollectorPresence("procmond", 7, 4242, 0, ["task:process.snapshot"]));
        Assert.Equal(CollectorHealthState.Healthy, _directory.Find("procmond")!.Health);

        _time.Advance(Interval); // exactly one interval: still healthy
        Assert.Equal(CollectorHealthState.Healthy, _directory.Find("procmond")!.Health);
        _time.Advance(Interval);
        Assert.Equal(CollectorHealthState.Degraded, _directory.Find("procmond")!.Health);
        _time.Advance(Interval);
        Assert.Equal(CollectorHealthState.Unhealthy, _directory.Find("procmond")!.Health);

        _directory.Heartbeat("procmond");
        Assert.Equal(CollectorHealthState.Healthy, _directory.Find("procmond")!.Health);
        Assert.Equal(
            ["procmond Healthy->Degraded", "procmond Degraded->Unhealthy", "procmond Unhealthy->Healthy"],
            _observer.Changes);
    }

    [Fact]
    public void Lifecycle_and_restarts_have_one_owner_and_the_restart_window_limits_attempts()
    {
        _directory.Configure("netmond", enabled: true, "/usr/lib/daemoneye/netmond");
        var transition = _directory.Transition("netmond", CollectorLifecycle.Running, 99, "registered on the bus");
        Assert.Equal((CollectorLifecycle.Running, 99), (transition.After.State, transition.After.Pid));

        Assert.True(_directory.TryCountRestart("netmond", 2, TimeSpan.FromSeconds(60), out var first, out var total1));
        Assert.True(_directory.TryCountRestart("netmond", 2, TimeSpan.FromSeconds(60), out var second, out var total2));
        Assert.False(_directory.TryCountRestart("netmond", 2, TimeSpan.FromSeconds(60), out var refused, out _));
        Assert.Equal((1, 1, 2, 2, 2), (first, total1, second, total2, refused));

        _time.Advance(TimeSpan.FromSeconds(61)); // ran stably past the window: attempts reset, the total stays
        Assert.True(_directory.TryCountRestart("netmond", 2, TimeSpan.FromSeconds(60), out var again, out var total3));
        Assert.Equal((1, 3), (again, total3));
        Assert.Equal(3, _directory.Find("netmond")!.Restarts);
    }

    [Fact]
    public void A_collector_nobody_supervises_is_Running_while_connected_and_forgotten_after()
    {
        _directory.Negotiated("hand", ["role:collector", "task:x"], [new RefusedCapability("colour:blue", "unknown")]);
        _directory.Connected(new CollectorPresence("hand", 3, 55, 0, ["role:collector", "task:x"]));
        var snapshot = _directory.Find("hand")!;
        Assert.Equal((CollectorLifecycle.Running, 55, false), (snapshot.State, snapshot.Pid, snapshot.Supervised));
        Assert.Equal("colour:blue", Assert.Single(snapshot.Refused).Capability);

        _directory.Disconnected("hand", 3);
        Assert.Null(_directory.Find("hand"));
        Assert.Empty(_directory.List());
    }

    private sealed class Recorder : ICollectorPresenceObserver
    {
        public List<string> Changes { get; } = [];

        public void OnCollectorConnected(CollectorPresence presence)
        {
        }

        public void OnCollectorDisconnected(string collectorId, long connectionId)
        {
        }

        public void OnCollectorLivenessChanged(string collectorId, CollectorHealthState before, CollectorHealthState after) =>
            Changes.Add($"{collectorId} {before}->{after}");

        public void OnCollectorHealthChecked(string collectorId, bool healthy, string detail)
        {
        }
    }
}
