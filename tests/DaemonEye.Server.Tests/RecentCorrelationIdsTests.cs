using System.Text;
using DaemonEye.Gateway.Security;

namespace DaemonEye.Server.Tests;

public sealed class RecentCorrelationIdsTests
{
    private static byte[] Id(int i) => Encoding.ASCII.GetBytes($"corr-{i}");

    [Fact]
    public void A_repeat_inside_the_window_is_refused_and_not_remembered_twice()
    {
        var window = new RecentCorrelationIds(3);
        Assert.True(window.TryAdd(Id(1)));
        Assert.True(window.TryAdd(Id(2)));
        Assert.False(window.TryAdd(Id(1)));
        Assert.True(window.TryAdd(Id(3)));
        Assert.False(window.TryAdd(Id(2)));
        Assert.False(window.TryAdd(Id(3)));
    }

    [Fact]
    public void An_id_is_accepted_again_once_the_window_has_moved_past_it()
    {
        var window = new RecentCorrelationIds(3);
        Assert.True(window.TryAdd(Id(1)));
        Assert.True(window.TryAdd(Id(2)));
        Assert.True(window.TryAdd(Id(3)));
        Assert.True(window.TryAdd(Id(4))); // 1 leaves
        Assert.True(window.TryAdd(Id(1))); // 2 leaves
        Assert.False(window.TryAdd(Id(3)));
        Assert.False(window.TryAdd(Id(4)));
        Assert.True(window.TryAdd(Id(2)));
    }

    [Fact]
    public void A_large_window_grows_its_ring_and_still_forgets_exactly_the_oldest()
    {
        const int Capacity = 1000; // the ring starts at 256 and doubles
        var window = new RecentCorrelationIds(Capacity);
        for (var i = 0; i < 5 * Capacity; i++)
        {
            Assert.True(window.TryAdd(Id(i)), $"id {i}");
            if (i >= Capacity)
            {
                // The id that just left is accepted again; it then evicts the next oldest.
                Assert.False(window.TryAdd(Id(i - Capacity + 1)), $"id {i - Capacity + 1} is still inside the window");
            }
        }

        // The last 1,000 ids are inside the window, the one before them is not.
        for (var i = 4 * Capacity; i < 5 * Capacity; i++)
        {
            Assert.False(window.TryAdd(Id(i)));
        }

        Assert.True(window.TryAdd(Id((4 * Capacity) - 1)));
    }
}
