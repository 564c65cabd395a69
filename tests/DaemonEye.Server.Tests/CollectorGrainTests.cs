using DaemonEye.Grains;

namespace DaemonEye.Server.Tests;

public sealed class CollectorGrainTests(ClusterFixture fixture) : IClassFixture<ClusterFixture>
{
    private static readonly DateTimeOffset T0 = new(2026, 11, 25, 12, 0, 0, TimeSpan.Zero);
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(5);

    private ICollectorGrain Collector() => fixture.Grains.GetGrain<ICollectorGrain>($"c{Guid.NewGuid():N}"[..20]);

    [Fact]
    public async Task Health_is_healthy_then_degraded_after_one_missed_interval_then_unhealthy_after_three()
    {
        var grain = Collector();
        await grain.Transition(CollectorLifecycle.Running, 42, "registered", T0);
        await grain.RecordHeartbeat(T0.AddSeconds(1));

        Assert.Equal(CollectorHealthState.Healthy, (await grain.EvaluateHealth(T0.AddSeconds(6), Interval)).Health);
        Assert.Equal(CollectorHealthState.Degraded, (await grain.EvaluateHealth(T0.AddSeconds(6.001), Interval)).Health);
        Assert.Equal(CollectorHealthState.Degraded, (await grain.EvaluateHealth(T0.AddSeconds(16), Interval)).Health);
        Assert.Equal(CollectorHealthState.Unhealthy, (await grain.EvaluateHealth(T0.AddSeconds(16.001), Interval)).Health);

        await grain.RecordHeartbeat(T0.AddSeconds(17));
        Assert.Equal(CollectorHealthState.Healthy, (await grain.EvaluateHealth(T0.AddSeconds(17.5), Interval)).Health);
    }

    [Fact]
    public async Task Without_any_heartbeat_the_clock_starts_when_it_became_running()
    {
        var grain = Collector();
        await grain.Transition(CollectorLifecycle.Running, 7, "registered", T0);

        Assert.Equal(CollectorHealthState.Healthy, (await grain.EvaluateHealth(T0.AddSeconds(5), Interval)).Health);
        Assert.Equal(CollectorHealthState.Degraded, (await grain.EvaluateHealth(T0.AddSeconds(5.5), Interval)).Health);
    }

    [Fact]
    public async Task A_collector_that_is_not_running_is_not_judged_and_an_old_heartbeat_is_ignored()
    {
        var grain = Collector();
        await grain.Transition(CollectorLifecycle.Running, 7, "registered", T0);
        await grain.RecordHeartbeat(T0.AddSeconds(3));
        await grain.RecordHeartbeat(T0.AddSeconds(1)); // out of order: kept the newer one
        Assert.Equal(T0.AddSeconds(3), (await grain.GetSnapshot()).LastHeartbeat);

        var stopped = await grain.Transition(CollectorLifecycle.Stopped, 0, "stopped on request", T0.AddSeconds(4));
        Assert.Equal(CollectorLifecycle.Running, stopped.Before.State);
        Assert.Equal(CollectorHealthState.Unknown, (await grain.EvaluateHealth(T0.AddHours(1), Interval)).Health);
    }

    [Fact]
    public async Task Restart_count_pid_and_capabilities_are_recorded()
    {
        var grain = Collector();
        await grain.Transition(CollectorLifecycle.Starting, 100, "spawned", T0);
        await grain.SetRestarts(2);
        await grain.SetCapabilities(["task:process.snapshot", "publish:events.process.#"]);

        var snapshot = await grain.GetSnapshot();
        Assert.Equal((CollectorLifecycle.Starting, 100, 2), (snapshot.State, snapshot.Pid, snapshot.Restarts));
        Assert.Equal(["task:process.snapshot", "publish:events.process.#"], snapshot.Capabilities);
    }
}
