using DaemonEye.Grains;
using Orleans.Core.Internal;
using Orleans.Runtime;

namespace DaemonEye.Server.Tests;

public sealed class TopicAndRegistryGrainTests(ClusterFixture fixture) : IClassFixture<ClusterFixture>
{
    private ISubscriptionRegistryGrain Registry => fixture.Grains.GetGrain<ISubscriptionRegistryGrain>(RegistryGrain.Key);

    private ITopicGrain Topic(string topic) => fixture.Grains.GetGrain<ITopicGrain>(topic);

    private static PublishBatch Batch(string topic, int count, long publisher = 999)
    {
        var buffer = new byte[count];
        var ends = Enumerable.Range(1, count).ToArray();
        for (var i = 0; i < count; i++)
        {
            buffer[i] = (byte)i;
        }

        return new PublishBatch(topic, buffer, ends, count, publisher);
    }

    private static string UniqueTopic(string leaf) => $"events.t{Guid.NewGuid():N}.{leaf}";

    [Fact]
    public async Task Subscribed_connection_receives_published_batches_numbered_from_one()
    {
        var conn = fixture.NewConnectionId();
        var topic = UniqueTopic("lifecycle");
        var root = topic[..topic.LastIndexOf('.')];

        var result = await Registry.Subscribe(new SubscriptionKey(conn, 1), root + ".+");
        Assert.True(result.Accepted, result.Error);

        await Topic(topic).Publish(Batch(topic, 3));
        await Topic(topic).Publish(Batch(topic, 2));

        var offers = fixture.Sink.For(conn);
        Assert.Equal(2, offers.Count);
        Assert.Equal((1UL, 3), (offers[0].FirstSequence, offers[0].Count));
        Assert.Equal((4UL, 2), (offers[1].FirstSequence, offers[1].Count));
        Assert.All(offers, o => Assert.Equal([1u], o.SubscriptionIds));

        var stats = await Topic(topic).GetStats();
        Assert.Equal(5UL, stats.Published);
        Assert.Equal(5UL, stats.Delivered);
        Assert.Equal(5UL, stats.LastSequence);
    }

    [Fact]
    public async Task Targets_are_offered_in_connection_id_order_so_local_subscribers_come_before_sockets()
    {
        var early = fixture.NewConnectionId();
        var late = fixture.NewConnectionId();
        var local = -fixture.NewConnectionId(); // the agent's own subscribers (LocalSubscriptions) have negative ids
        var topic = UniqueTopic("order");
        foreach (var connection in new[] { late, local, early })
        {
            Assert.True((await Registry.Subscribe(new SubscriptionKey(connection, 1), topic)).Accepted);
        }

        await Topic(topic).Publish(Batch(topic, 1));

        Assert.Equal([local, early, late], fixture.Sink.OnTopic(topic).Select(o => o.ConnectionId));
    }

    [Fact]
    public async Task Overlapping_patterns_of_one_connection_yield_one_offer_listing_both()
    {
        var conn = fixture.NewConnectionId();
        var topic = UniqueTopic("tree");
        var root = topic[..topic.LastIndexOf('.')];
        Assert.True((await Registry.Subscribe(new SubscriptionKey(conn, 1), root + ".#")).Accepted);
        Assert.True((await Registry.Subscribe(new SubscriptionKey(conn, 2), topic)).Accepted);
        Assert.True((await Registry.Subscribe(new SubscriptionKey(conn, 3), root + ".other")).Accepted);

        await Topic(topic).Publish(Batch(topic, 1));

        var offer = Assert.Single(fixture.Sink.For(conn));
        Assert.Equal([1u, 2u], offer.SubscriptionIds);
    }

    [Fact]
    public async Task Subscription_made_after_topic_activation_is_pushed_to_the_live_topic()
    {
        var conn = fixture.NewConnectionId();
        var topic = UniqueTopic("metadata");

        await Topic(topic).Publish(Batch(topic, 1)); // activates with no subscribers
        Assert.Empty(fixture.Sink.For(conn));

        Assert.True((await Registry.Subscribe(new SubscriptionKey(conn, 7), "events.#")).Accepted);
        await Topic(topic).Publish(Batch(topic, 1));

        var offer = Assert.Single(fixture.Sink.For(conn), o => o.Topic == topic);
        Assert.Equal(2UL, offer.FirstSequence);
        Assert.True((await Registry.Unsubscribe(new SubscriptionKey(conn, 7))).Equals(true));
    }

    [Fact]
    public async Task Unsubscribe_stops_delivery_when_it_returns()
    {
        var conn = fixture.NewConnectionId();
        var topic = UniqueTopic("integrity");
        var key = new SubscriptionKey(conn, 1);
        Assert.True((await Registry.Subscribe(key, topic)).Accepted);
        await Topic(topic).Publish(Batch(topic, 1));

        Assert.True(await Registry.Unsubscribe(key));
        Assert.False(await Registry.Unsubscribe(key));
        await Topic(topic).Publish(Batch(topic, 1));

        Assert.Single(fixture.Sink.For(conn));
        Assert.Equal(0, (await Topic(topic).GetStats()).Subscribers);
    }

    [Fact]
    public async Task RemoveConnection_releases_every_subscription_of_that_connection_only()
    {
        var gone = fixture.NewConnectionId();
        var stays = fixture.NewConnectionId();
        var topic = UniqueTopic("anomaly");
        Assert.True((await Registry.Subscribe(new SubscriptionKey(gone, 1), topic)).Accepted);
        Assert.True((await Registry.Subscribe(new SubscriptionKey(gone, 2), "events.#")).Accepted);
        Assert.True((await Registry.Subscribe(new SubscriptionKey(stays, 1), topic)).Accepted);
        await Topic(topic).Publish(Batch(topic, 1));

        Assert.Equal(2, await Registry.RemoveConnection(gone));
        Assert.Equal(0, await Registry.RemoveConnection(gone));
        await Topic(topic).Publish(Batch(topic, 1));

        Assert.Single(fixture.Sink.For(gone));
        Assert.Equal(2, fixture.Sink.For(stays).Count);
        Assert.Equal([new SubscriptionKey(stays, 1)], await Registry.Resolve(topic));
    }

    [Fact]
    public async Task Drops_reported_by_the_delivery_path_are_counted_per_topic()
    {
        var conn = fixture.NewConnectionId();
        var topic = UniqueTopic("batch");
        fixture.Sink.SetCapacity(conn, 4);
        Assert.True((await Registry.Subscribe(new SubscriptionKey(conn, 1), topic)).Accepted);

        await Topic(topic).Publish(Batch(topic, 3));
        await Topic(topic).Publish(Batch(topic, 3));

        var stats = await Topic(topic).GetStats();
        Assert.Equal(6UL, stats.Published);
        Assert.Equal(4UL, stats.Delivered);
        Assert.Equal(2UL, stats.Dropped);
    }

    [Fact]
    public async Task Sequence_continues_after_the_topic_grain_is_deactivated()
    {
        var conn = fixture.NewConnectionId();
        var topic = UniqueTopic("lifecycle");
        Assert.True((await Registry.Subscribe(new SubscriptionKey(conn, 1), topic)).Accepted);
        await Topic(topic).Publish(Batch(topic, 5));

        // A busy topic's grain keeps itself alive (idle collection would not take it): deactivate it outright.
        await Topic(topic).Cast<IGrainManagementExtension>().DeactivateOnIdle();

        await Topic(topic).Publish(Batch(topic, 1));

        // A fresh activation (its own counter restarted) that resumed the topic's numbering.
        Assert.Equal(1UL, (await Topic(topic).GetStats()).Published);
        Assert.Equal(6UL, fixture.Sink.For(conn)[^1].FirstSequence);
    }

    [Fact]
    public async Task Concurrent_subscribes_and_topic_activations_converge()
    {
        var conn = fixture.NewConnectionId();
        var prefix = $"events.c{Guid.NewGuid():N}";
        var topics = Enumerable.Range(0, 20).Select(i => $"{prefix}.t{i}").ToArray();

        // Activate topics and subscribe at the same time, then check every topic knows every subscription.
        var work = new List<Task>();
        for (var i = 0; i < 20; i++)
        {
            var key = new SubscriptionKey(conn, (uint)(i + 1));
            work.Add(Registry.Subscribe(key, i % 2 == 0 ? prefix + ".#" : prefix + ".+"));
            work.Add(Topic(topics[i]).GetStats());
        }

        await Task.WhenAll(work);
        foreach (var topic in topics)
        {
            Assert.Equal(20, (await Topic(topic).GetStats()).Subscribers);
            Assert.Equal(20, (await Registry.Resolve(topic)).Length);
        }

        Assert.Equal(20, await Registry.RemoveConnection(conn));
        foreach (var topic in topics)
        {
            Assert.Equal(0, (await Topic(topic).GetStats()).Subscribers);
        }
    }

    [Fact]
    public async Task Closed_connection_is_skipped_without_counting_drops()
    {
        var conn = fixture.NewConnectionId();
        var topic = UniqueTopic("tree");
        Assert.True((await Registry.Subscribe(new SubscriptionKey(conn, 1), topic)).Accepted);
        fixture.Sink.Close(conn);

        await Topic(topic).Publish(Batch(topic, 2));

        var stats = await Topic(topic).GetStats();
        Assert.Equal((2UL, 0UL, 0UL), (stats.Published, stats.Delivered, stats.Dropped));
    }

    [Fact]
    public async Task Invalid_pattern_is_refused_by_the_registry_with_the_reason()
    {
        var result = await Registry.Subscribe(new SubscriptionKey(fixture.NewConnectionId(), 1), "events.proc*");
        Assert.False(result.Accepted);
        Assert.Contains("'+'", result.Error);
    }
}

public sealed class RegistryLimitTests(SmallClusterFixture fixture) : IClassFixture<SmallClusterFixture>
{
    [Fact]
    public async Task Max_subscribers_is_enforced_with_a_clear_error_and_frees_up_on_unsubscribe()
    {
        var registry = fixture.Grains.GetGrain<ISubscriptionRegistryGrain>(RegistryGrain.Key);
        var conn = fixture.NewConnectionId();
        for (uint i = 1; i <= 3; i++)
        {
            Assert.True((await registry.Subscribe(new SubscriptionKey(conn, i), "events.#")).Accepted);
        }

        var refused = await registry.Subscribe(new SubscriptionKey(conn, 4), "events.#");
        Assert.False(refused.Accepted);
        Assert.Contains("broker.max_subscribers (3)", refused.Error);

        Assert.True(await registry.Unsubscribe(new SubscriptionKey(conn, 2)));
        Assert.True((await registry.Subscribe(new SubscriptionKey(conn, 4), "events.#")).Accepted);
        Assert.Equal(3, (await registry.GetStats()).Subscriptions);
    }
}
