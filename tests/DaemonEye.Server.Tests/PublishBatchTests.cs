using DaemonEye.Grains;

namespace DaemonEye.Server.Tests;

public sealed class PublishBatchTests
{
    [Fact]
    public void A_borrowed_batch_is_copied_once_for_whoever_keeps_it_and_the_copy_outlives_the_buffers_reuse()
    {
        var buffer = "aabbb-spare"u8.ToArray();
        int[] ends = [2, 5, 0, 0];
        var borrowed = PublishBatch.Borrowed("events.t", buffer, ends, 2, 7, 42);

        var kept = borrowed.Stable();
        Assert.NotSame(borrowed, kept);
        Assert.Same(kept, borrowed.Stable()); // every queued subscriber shares the one copy

        // The publisher reuses its buffers for the next read.
        "zzzzzzzzzzz"u8.CopyTo(buffer);
        ends[0] = 9;

        Assert.Equal("aa"u8.ToArray(), kept.Message(0).ToArray());
        Assert.Equal("bbb"u8.ToArray(), kept.Message(1).ToArray());
        Assert.Equal(5, kept.Buffer.Length); // only the messages, not the spare room
        Assert.Equal((2, 7L, 42L, "events.t"), (kept.Count, kept.PublisherConnectionId, kept.ReadTimestamp, kept.Topic));
    }

    [Fact]
    public void An_owned_batch_is_its_own_stable_copy()
    {
        var owned = new PublishBatch("events.t", "ab"u8.ToArray(), [2], 1, 0);
        Assert.Same(owned, owned.Stable());
    }
}
