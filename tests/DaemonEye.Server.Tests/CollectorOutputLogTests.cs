using DaemonEye.Supervision;
using Microsoft.Extensions.Time.Testing;

namespace DaemonEye.Server.Tests;

/// <summary>The supervisor's ring of each collector's recent output lines (daemoneye-cli logs).</summary>
public sealed class CollectorOutputLogTests
{
    private readonly FakeTimeProvider _clock = new(new DateTimeOffset(2026, 12, 5, 9, 0, 0, TimeSpan.Zero));

    [Fact]
    public void Keeps_the_last_lines_per_collector_oldest_first_and_counts_what_it_discarded()
    {
        var log = new CollectorOutputLog(_clock);
        for (var i = 1; i <= CollectorOutputLog.Capacity + 20; i++)
        {
            log.Add("procmond", i % 2 == 0 ? "stderr" : "stdout", $"line {i}");
            _clock.Advance(TimeSpan.FromMilliseconds(1));
        }

        log.Add("netmond", "stdout", "other");

        var all = log.Read("procmond", 0);
        Assert.Equal(CollectorOutputLog.Capacity, all.Lines.Count);
        Assert.Equal(20UL, all.Discarded);
        Assert.Equal((uint)CollectorOutputLog.Capacity, all.Capacity);
        Assert.Equal("line 21", all.Lines[0].Text);
        Assert.Equal($"line {CollectorOutputLog.Capacity + 20}", all.Lines[^1].Text);
        Assert.True(all.Lines[0].TimeUnixNanos < all.Lines[^1].TimeUnixNanos);

        var last = log.Read("procmond", 2);
        Assert.Equal([$"line {CollectorOutputLog.Capacity + 19}", $"line {CollectorOutputLog.Capacity + 20}"], last.Lines.Select(l => l.Text));
        Assert.Equal(["stdout", "stderr"], last.Lines.Select(l => l.Stream));
        Assert.Equal("other", Assert.Single(log.Read("netmond", 0).Lines).Text);
        Assert.Empty(log.Read("fsmond", 0).Lines);
    }

    [Fact]
    public void Lines_are_escaped_as_the_agents_log_escapes_them()
    {
        var log = new CollectorOutputLog(_clock);

        log.Add("procmond", "stdout", "evil \u001b[31mred");

        Assert.DoesNotContain('\u001b', Assert.Single(log.Read("procmond", 0).Lines).Text);
    }
}
