using DaemonEye.Gateway.Durability;

namespace DaemonEye.Server.Tests;

/// <summary>The durable pumps' window of unacknowledged messages: cumulative acks (bus), single acks in any order (MQTT), its bound.</summary>
public sealed class InFlightWindowTests
{
    [Fact]
    public void A_cumulative_ack_releases_everything_up_to_its_sequence_with_the_bytes()
    {
        var window = new InFlightWindow();
        window.Add(3, 10);
        window.Add(5, 20);
        window.Add(9, 40);

        window.ReleaseThrough(6);

        Assert.Equal((1, 40L), (window.Count, window.Bytes));
        Assert.True(window.TryGetOldest(out var oldest));
        Assert.Equal(9UL, oldest);
        window.ReleaseThrough(100);
        Assert.Equal((0, 0L), (window.Count, window.Bytes));
        Assert.False(window.TryGetOldest(out _));
    }

    [Fact]
    public void Single_acks_in_any_order_release_once_and_the_oldest_is_the_lowest_still_out()
    {
        var window = new InFlightWindow();
        foreach (var sequence in new ulong[] { 1, 2, 4, 5, 7 })
        {
            window.Add(sequence, 1);
        }

        Assert.True(window.Release(4));
        Assert.False(window.Release(4));
        Assert.False(window.Release(3));
        Assert.True(window.TryGetOldest(out var oldest));
        Assert.Equal(1UL, oldest);

        Assert.True(window.Release(1));
        Assert.True(window.Release(2));
        Assert.True(window.TryGetOldest(out oldest));
        Assert.Equal(5UL, oldest);
        Assert.Equal((2, 2L), (window.Count, window.Bytes));
    }

    [Fact]
    public void One_message_never_acknowledged_keeps_its_place_while_the_others_come_and_go()
    {
        var window = new InFlightWindow();
        window.Add(1, 1);
        for (ulong sequence = 2; sequence < 100_000; sequence++)
        {
            window.Add(sequence, 1);
            Assert.True(window.Release(sequence));
        }

        Assert.Equal((1, 1L), (window.Count, window.Bytes));
        Assert.Equal(16, window.Capacity); // compacted, never grown: the released entries behind the oldest do not pile up
        Assert.True(window.TryGetOldest(out var oldest));
        Assert.Equal(1UL, oldest);
        Assert.False(window.Release(99_999));
        Assert.True(window.Release(1));
        Assert.False(window.TryGetOldest(out _));
    }
}
