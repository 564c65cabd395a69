using DaemonEye.Collectors.Netmond;
using DaemonEye.Protocol.Network.V1;
using Microsoft.Extensions.Time.Testing;

namespace DaemonEye.Netmond.Tests;

public sealed class SettingsAndBudgetTests
{
    [Fact]
    public void Every_bad_setting_is_reported_together_and_nothing_changes()
    {
        var errors = new List<string>();
        var settings = NetmondSettings.Parse(["--scan-interval-ms", "5", "--protocols=icmp", "--ignore-ports", "22,70000", "--ignore-addresses", "10.0.0.0/33", "--colour", "red"], errors);
        Assert.Equal(5, errors.Count);
        Assert.Contains(errors, e => e.StartsWith("scan_interval_ms is '5'; allowed: 10 to 3600000", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("unknown protocol(s) icmp", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("'70000' is not a port", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("'10.0.0.0/33' is neither a CIDR block nor an address", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("unknown setting 'colour'; known: scan_interval_ms, protocols", StringComparison.Ordinal));

        errors.Clear();
        settings = NetmondSettings.Parse(["--scan-interval-ms=250", "--ignore-ports", "53", "--ignore-addresses", "10.0.0.0/8,::1"], errors);
        Assert.Empty(errors);
        settings.Apply([new("scan_interval_ms", "500"), new("destroy_queue_bytes", "65536")], errors, atStart: false);
        Assert.Equal(["destroy_queue_bytes is fixed when netmond starts; change it in the collector's arguments and restart it"], errors);
        Assert.Equal(TimeSpan.FromMilliseconds(250), settings.ScanInterval); // all or nothing
        Assert.True(settings.Ignored(53, 0, System.Net.IPAddress.Loopback));
        Assert.True(settings.Ignored(1000, 2000, System.Net.IPAddress.Parse("::ffff:10.1.2.3")));
        Assert.True(settings.Ignored(1000, 2000, System.Net.IPAddress.IPv6Loopback));
        Assert.False(settings.Ignored(1000, 2000, System.Net.IPAddress.Parse("11.0.0.1")));
    }

    [Fact]
    public void Events_over_the_budget_are_counted_and_summed_up_when_the_second_ends()
    {
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(1_000_000));
        var budget = new EventBudget(time, () => 3, "netmond");
        var closed = new ConnectionEvent { Kind = ConnectionEventKind.Closed, Connection = new Connection { BytesSent = 10, BytesReceived = 7 } };
        var taken = Enumerable.Range(0, 5).Select(_ => budget.TryTake(closed, out var f) && f is null).ToList();
        Assert.Equal([true, true, true, false, false], taken);
        Assert.False(budget.TryTake(new ListenerEvent { Kind = ListenerEventKind.Started }, out _));
        Assert.Equal(3, budget.Coalesced);

        time.Advance(TimeSpan.FromMilliseconds(999));
        Assert.Null(budget.Roll());
        time.Advance(TimeSpan.FromMilliseconds(1));
        var summary = budget.Roll();
        Assert.NotNull(summary);
        Assert.Equal((2UL, 1UL, 20UL, 14UL), (summary.ConnectionsClosed, summary.ListenersStarted, summary.BytesSent, summary.BytesReceived));
        Assert.Equal((1_000_000UL, 1_001_000UL), (summary.WindowStartUnixMs, summary.WindowEndUnixMs));
        Assert.Null(budget.Roll());
        Assert.True(budget.TryTake(closed, out var none)); // a new second, a new budget
        Assert.Null(none);
    }
}
