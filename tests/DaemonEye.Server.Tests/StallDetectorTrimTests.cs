using DaemonEye.Silo;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace DaemonEye.Server.Tests;

/// <summary>The agent's silo stops Orleans' 100 ms thread-pool stall sampling (it probes no other silo).
/// The members it reaches are internal to Orleans: this fails when an Orleans update moves them.</summary>
public sealed class StallDetectorTrimTests
{
    [Fact]
    public async Task The_closed_single_silo_stops_the_stall_detectors_timer_at_start()
    {
        var builder = Host.CreateApplicationBuilder();
        builder.UseOrleans(silo => silo.UseClosedSingleSilo());
        using var host = builder.Build();
        await host.StartAsync();
        try
        {
            var trim = Assert.Single(host.Services.GetServices<IHostedService>().OfType<StallDetectorTrim>());
            Assert.Null(trim.Outcome);
        }
        finally
        {
            await host.StopAsync();
        }
    }

    [Fact]
    public void Without_an_Orleans_silo_it_says_what_it_did_not_find()
    {
        using var services = new ServiceCollection().BuildServiceProvider();
        Assert.Equal("no ILocalSiloHealthMonitor is registered", StallDetectorTrim.Stop(services));
    }
}
