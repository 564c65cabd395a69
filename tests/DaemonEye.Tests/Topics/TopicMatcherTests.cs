using DaemonEye.Topics;

namespace DaemonEye.Tests.Topics;

public sealed class TopicMatcherTests
{
    public static TheoryData<int> CacheCapacities => [4096, 0];

    public static TheoryData<string, string, bool, int> MatchPairsWithCache
    {
        get
        {
            var data = new TheoryData<string, string, bool, int>();
            foreach (var row in TopicCases.MatchPairs)
            {
                var (pattern, topic, expected) = ((string)row[0], (string)row[1], (bool)row[2]);
                data.Add(pattern, topic, expected, 4096);
                data.Add(pattern, topic, expected, 0);
            }

            return data;
        }
    }

    [Theory]
    [MemberData(nameof(MatchPairsWithCache))]
    public void Match_follows_the_same_match_table_as_TopicRules(string pattern, string topic, bool expected, int cacheCapacity)
    {
        var matcher = new TopicMatcher<int>(cacheCapacity);
        matcher.Add(pattern, 7);

        int[] want = expected ? [7] : [];
        Assert.Equal(want, matcher.Match(topic));
        Assert.Equal(want, matcher.Match(topic)); // second time from the cache when it is on
        Assert.Equal(expected, TopicRules.Matches(pattern, topic));
    }

    [Theory]
    [MemberData(nameof(CacheCapacities))]
    public void All_table_patterns_in_one_matcher_agree_with_TopicRules(int cacheCapacity)
    {
        var matcher = new TopicMatcher<string>(cacheCapacity);
        var pairs = TopicCases.MatchPairs.Select(r => ((string)r[0], (string)r[1])).ToList();
        foreach (var (pattern, _) in pairs)
        {
            matcher.Add(pattern, pattern);
        }

        foreach (var topic in pairs.Select(p => p.Item2).Distinct())
        {
            var want = pairs.Select(p => p.Item1).Distinct().Where(p => TopicRules.Matches(p, topic)).Order(StringComparer.Ordinal);
            Assert.Equal(want, matcher.Match(topic).Order(StringComparer.Ordinal));
            Assert.Equal(want, matcher.Match(topic).Order(StringComparer.Ordinal));
        }
    }

    [Theory]
    [MemberData(nameof(CacheCapacities))]
    public void Add_and_remove_report_whether_anything_changed(int cacheCapacity)
    {
        var matcher = new TopicMatcher<string>(cacheCapacity);

        Assert.True(matcher.Add("events.process.+", "a"));
        Assert.False(matcher.Add("events.process.+", "a"));
        Assert.True(matcher.Add("events.process.+", "b"));
        Assert.True(matcher.Add("events.#", "a"));
        Assert.Equal(3, matcher.Count);

        Assert.True(matcher.Remove("events.process.+", "a"));
        Assert.False(matcher.Remove("events.process.+", "a"));
        Assert.Equal(2, matcher.Count);
        Assert.Equal(["a", "b"], matcher.Match("events.process.lifecycle").Order(StringComparer.Ordinal));

        Assert.True(matcher.Remove("events.process.+", "b"));
        Assert.True(matcher.Remove("events.#", "a"));
        Assert.Equal(0, matcher.Count);
        Assert.Empty(matcher.Match("events.process.lifecycle"));
        Assert.Empty(matcher.Match("events"));
    }

    [Theory]
    [MemberData(nameof(CacheCapacities))]
    public void Removing_absent_entries_changes_nothing(int cacheCapacity)
    {
        var matcher = new TopicMatcher<string>(cacheCapacity);
        matcher.Add("events.process.lifecycle", "a");
        matcher.Add("events.#", "b");
        var generation = matcher.Generation;

        Assert.False(matcher.Remove("events.process.lifecycle", "nobody"));
        Assert.False(matcher.Remove("events.process", "a"));                 // a prefix node without values
        Assert.False(matcher.Remove("events", "a"));
        Assert.False(matcher.Remove("events.process.lifecycle.deeper", "a")); // longer than anything added
        Assert.False(matcher.Remove("control.#", "b"));
        Assert.False(matcher.Remove("events.+", "b"));
        Assert.False(matcher.Remove("events.*", "a"));                        // invalid pattern
        Assert.False(matcher.Remove("", "a"));

        Assert.Equal(2, matcher.Count);
        Assert.Equal(generation, matcher.Generation);
        Assert.Equal(["a", "b"], matcher.Match("events.process.lifecycle").Order(StringComparer.Ordinal));
    }

    [Theory]
    [InlineData("events.*")]
    [InlineData("")]
    [InlineData("events.#.x")]
    [InlineData("foo.bar")]
    public void Adding_an_invalid_pattern_throws_and_changes_nothing(string pattern)
    {
        var matcher = new TopicMatcher<int>();

        Assert.Throws<TopicFormatException>(() => matcher.Add(pattern, 1));
        Assert.Equal(0, matcher.Count);
        Assert.Equal(0, matcher.Generation);
    }

    [Theory]
    [MemberData(nameof(CacheCapacities))]
    public void A_value_under_several_matching_patterns_is_returned_once(int cacheCapacity)
    {
        var matcher = new TopicMatcher<string>(cacheCapacity);
        matcher.Add("events.process.lifecycle", "a");
        matcher.Add("events.process.+", "a");
        matcher.Add("events.+.lifecycle", "a");
        matcher.Add("events.#", "a");
        matcher.Add("events.process.#", "b");
        matcher.Add("#", "a");
        matcher.Add("#", "c");
        matcher.Add("+.+.+", "b");
        matcher.Add("control.#", "d");

        for (var i = 0; i < 2; i++)
        {
            Assert.Equal(["a", "b", "c"], matcher.Match("events.process.lifecycle").Order(StringComparer.Ordinal));
            Assert.Equal(["a", "b", "c"], matcher.Match("events.process").Order(StringComparer.Ordinal));
            Assert.Equal(["a", "c"], matcher.Match("events").Order(StringComparer.Ordinal));
            Assert.Equal(["a", "b", "c", "d"], matcher.Match("control.health.heartbeat").Order(StringComparer.Ordinal));
        }
    }

    [Theory]
    [MemberData(nameof(CacheCapacities))]
    public void A_value_that_stops_or_starts_being_under_several_patterns_is_still_returned_once(int cacheCapacity)
    {
        var matcher = new TopicMatcher<string>(cacheCapacity);
        const string topic = "events.process.lifecycle";
        matcher.Add("events.#", "a");
        matcher.Add("events.process.+", "a");
        matcher.Add("events.process.+", "b");
        Assert.Equal(["a", "b"], matcher.Match(topic).Order(StringComparer.Ordinal));

        matcher.Remove("events.#", "a");
        Assert.Equal(["a", "b"], matcher.Match(topic).Order(StringComparer.Ordinal));
        Assert.Empty(matcher.Match("events"));

        matcher.Add("events.#", "b");
        matcher.Add("+.process.+", "a");
        matcher.Add("+.process.lifecycle", "c");
        Assert.Equal(["a", "b", "c"], matcher.Match(topic).Order(StringComparer.Ordinal));
        Assert.Equal(["b"], matcher.Match("events"));

        matcher.Remove("events.process.+", "a");
        matcher.Remove("events.process.+", "b");
        Assert.Equal(["a", "b", "c"], matcher.Match(topic).Order(StringComparer.Ordinal));
        Assert.Equal(["a", "c"], matcher.Match("control.process.lifecycle").Order(StringComparer.Ordinal));
    }

    [Theory]
    [MemberData(nameof(CacheCapacities))]
    public void A_returned_array_is_not_changed_by_later_changes(int cacheCapacity)
    {
        var matcher = new TopicMatcher<string>(cacheCapacity);
        matcher.Add("events.process.+", "a");
        var single = matcher.Match("events.process.lifecycle");
        matcher.Add("events.#", "b");
        var merged = matcher.Match("events.process.lifecycle");

        matcher.Add("events.process.+", "c");
        matcher.Remove("events.process.+", "a");
        matcher.Add("events.#", "d");

        Assert.Equal(["a"], single);
        Assert.Equal(["a", "b"], merged.Order(StringComparer.Ordinal));
        Assert.Equal(["b", "c", "d"], matcher.Match("events.process.lifecycle").Order(StringComparer.Ordinal));
    }

    [Fact]
    public void De_duplication_uses_the_given_comparer()
    {
        var matcher = new TopicMatcher<string>(0, StringComparer.OrdinalIgnoreCase);
        Assert.True(matcher.Add("events.#", "A"));
        Assert.False(matcher.Add("events.#", "a"));
        Assert.True(matcher.Add("events.+", "a"));

        Assert.Single(matcher.Match("events.process"));
        Assert.True(matcher.Remove("events.#", "a"));
    }

    [Fact]
    public void A_cached_result_is_never_stale_after_add_or_remove()
    {
        var matcher = new TopicMatcher<string>(4096);
        const string topic = "events.process.lifecycle";
        matcher.Add("events.process.lifecycle", "exact");

        Assert.Equal(["exact"], matcher.Match(topic));
        Assert.Equal(["exact"], matcher.Match(topic));
        Assert.True(matcher.CachedTopics >= 1);

        matcher.Add("events.#", "wide");
        Assert.Equal(["exact", "wide"], matcher.Match(topic).Order(StringComparer.Ordinal));

        matcher.Remove("events.process.lifecycle", "exact");
        Assert.Equal(["wide"], matcher.Match(topic));

        // A change elsewhere in the trie also invalidates.
        matcher.Add("+.process.+", "plus");
        Assert.Equal(["plus", "wide"], matcher.Match(topic).Order(StringComparer.Ordinal));

        matcher.Remove("events.#", "wide");
        matcher.Remove("+.process.+", "plus");
        Assert.Empty(matcher.Match(topic));
    }

    [Fact]
    public void A_failed_add_or_remove_keeps_the_cache()
    {
        var matcher = new TopicMatcher<string>(4096);
        matcher.Add("events.#", "a");
        var first = matcher.Match("events.process");

        Assert.False(matcher.Add("events.#", "a"));
        Assert.False(matcher.Remove("events.#", "b"));

        Assert.Same(first, matcher.Match("events.process"));
    }

    [Fact]
    public void The_cache_is_used_and_stays_bounded()
    {
        const int capacity = 16;
        var matcher = new TopicMatcher<int>(capacity);
        matcher.Add("control.collector.+", 1);
        matcher.Add("control.#", 2);

        var first = matcher.Match("control.collector.c0");
        Assert.Same(first, matcher.Match("control.collector.c0"));

        for (var i = 0; i < 1000; i++)
        {
            var topic = $"control.collector.c{i}";
            Assert.Equal([1, 2], matcher.Match(topic).Order());
            Assert.InRange(matcher.CachedTopics, 1, capacity);
        }
    }

    [Fact]
    public void With_the_cache_off_nothing_is_cached()
    {
        var matcher = new TopicMatcher<int>(0);
        matcher.Add("events.#", 1);

        Assert.Equal([1], matcher.Match("events.process"));
        Assert.Equal(0, matcher.CachedTopics);
    }

    [Fact]
    public void Generation_increases_on_every_change_and_only_then()
    {
        var matcher = new TopicMatcher<int>();
        var g0 = matcher.Generation;

        matcher.Add("events.#", 1);
        var g1 = matcher.Generation;
        matcher.Add("events.#", 1);
        var g2 = matcher.Generation;
        matcher.Match("events.process");
        var g3 = matcher.Generation;
        matcher.Remove("events.#", 1);
        var g4 = matcher.Generation;
        matcher.Remove("events.#", 1);
        var g5 = matcher.Generation;

        Assert.True(g1 > g0);
        Assert.Equal(g1, g2);
        Assert.Equal(g2, g3);
        Assert.True(g4 > g3);
        Assert.Equal(g4, g5);
    }

    [Fact]
    public void The_capacity_may_not_be_negative() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new TopicMatcher<int>(-1));

    [Theory]
    [InlineData(0)]
    [InlineData(8)]
    [InlineData(4096)]
    public void Random_patterns_and_topics_agree_with_brute_force(int cacheCapacity)
    {
        var random = new Random(20240611);
        var matcher = new TopicMatcher<int>(cacheCapacity);
        var entries = new HashSet<(string Pattern, int Value)>();

        for (var i = 0; i < 3000; i++)
        {
            var pattern = RandomPattern(random);
            var value = random.Next(400);
            Assert.Equal(entries.Add((pattern, value)), matcher.Add(pattern, value));
        }

        // Remove a third, some of them absent.
        foreach (var entry in entries.Where(_ => random.Next(3) == 0).ToList())
        {
            Assert.True(matcher.Remove(entry.Pattern, entry.Value));
            entries.Remove(entry);
        }

        for (var i = 0; i < 200; i++)
        {
            var pattern = RandomPattern(random);
            var value = random.Next(400);
            Assert.Equal(entries.Remove((pattern, value)), matcher.Remove(pattern, value));
        }

        Assert.Equal(entries.Count, matcher.Count);
        for (var i = 0; i < 4000; i++)
        {
            var topic = RandomTopic(random);
            var expected = BruteForce(entries, topic);
            Assert.Equal(expected, matcher.Match(topic).Order());
            Assert.Equal(expected, matcher.Match(topic).Order());
        }
    }

    /// <summary>
    /// Readers match while a writer adds and removes; after each round, with all threads at a
    /// barrier, every reader checks every topic against a brute-force reference.
    /// </summary>
    [Theory]
    [InlineData(0)]
    [InlineData(16)]
    [InlineData(4096)]
    public void Concurrent_matches_during_changes_end_consistent(int cacheCapacity)
    {
        const int readers = 3;
        const int rounds = 40;
        var random = new Random(7);
        var matcher = new TopicMatcher<int>(cacheCapacity);
        var entries = new HashSet<(string Pattern, int Value)>();
        var topics = Enumerable.Range(0, 64).Select(_ => RandomTopic(random)).Distinct().ToArray();
        var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var churnedRounds = 0;
        var reference = new Dictionary<string, int[]>();
        using var barrier = new Barrier(readers + 1);

        void Reader(int id)
        {
            var mine = new Random(100 + id);
            for (var round = 0; round < rounds; round++)
            {
                barrier.SignalAndWait(); // start of the churn phase
                var writerDone = false;
                while (!writerDone)
                {
                    writerDone = Volatile.Read(ref churnedRounds) > round;
                    var result = matcher.Match(topics[mine.Next(topics.Length)]);
                    if (result.Distinct().Count() != result.Length)
                    {
                        failures.Enqueue($"duplicates in round {round}");
                    }
                }

                barrier.SignalAndWait(); // writer has stopped and computed the reference: check everything
                foreach (var topic in topics)
                {
                    var expected = reference[topic];
                    var actual = matcher.Match(topic).Order().ToArray();
                    if (!expected.SequenceEqual(actual))
                    {
                        failures.Enqueue($"round {round}, reader {id}, {topic}: expected [{string.Join(',', expected)}], got [{string.Join(',', actual)}]");
                    }
                }

                barrier.SignalAndWait(); // checks done; the writer may reset
            }
        }

        var threads = Enumerable.Range(0, readers).Select(i => new Thread(() => Reader(i)) { IsBackground = true }).ToList();
        threads.ForEach(t => t.Start());

        var writerRandom = new Random(11);
        for (var round = 0; round < rounds; round++)
        {
            barrier.SignalAndWait();
            for (var i = 0; i < 150; i++)
            {
                var pattern = RandomPattern(writerRandom);
                var value = writerRandom.Next(50);
                if (writerRandom.Next(3) == 0 && entries.Count > 0)
                {
                    var victim = entries.ElementAt(writerRandom.Next(entries.Count));
                    matcher.Remove(victim.Pattern, victim.Value);
                    entries.Remove(victim);
                }
                else if (matcher.Add(pattern, value))
                {
                    entries.Add((pattern, value));
                }
            }

            Volatile.Write(ref churnedRounds, round + 1);
            foreach (var topic in topics)
            {
                reference[topic] = BruteForce(entries, topic);
            }

            barrier.SignalAndWait();
            barrier.SignalAndWait();
        }

        threads.ForEach(t => t.Join());
        Assert.Empty(failures);
        Assert.Equal(entries.Count, matcher.Count);
    }

    /// <summary>
    /// Linearizability of the cache: a match that starts after Add (or Remove) returned sees the
    /// change, even while other threads are filling the cache for the same topic.
    /// </summary>
    [Theory]
    [InlineData(4096)]
    [InlineData(1)]
    public void A_match_that_starts_after_a_change_returned_sees_it(int cacheCapacity)
    {
        const int readers = 2;
        const int values = 600;
        const string topic = "control.health.heartbeat.procmond";
        string[] patterns = ["control.health.heartbeat.procmond", "control.#", "control.health.+.procmond", "+.health.#", "#"];
        var matcher = new TopicMatcher<int>(cacheCapacity);
        var published = 0;  // values 0..published-1 have been added, and Add has returned
        var removed = 0;    // values 0..removed-1 have been removed, and Remove has returned
        var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
        using var start = new ManualResetEventSlim(false);
        using var stop = new ManualResetEventSlim(false);

        var threads = Enumerable.Range(0, readers).Select(_ => new Thread(() =>
        {
            start.Wait();
            while (!stop.IsSet)
            {
                var added = Volatile.Read(ref published);
                var gone = Volatile.Read(ref removed);
                var result = matcher.Match(topic);
                var goneByTheEnd = Volatile.Read(ref removed);
                var set = result.ToHashSet();
                // Value goneByTheEnd may be the one whose Remove is running (or has returned but not
                // yet been counted) while this match ran, so it may rightly be missing; every value
                // after it was added before the match began and not yet removed.
                for (var v = goneByTheEnd + 1; v < added; v++)
                {
                    if (!set.Contains(v))
                    {
                        failures.Enqueue($"value {v} added before the match began is missing (added 0..{added - 1}, removed 0..{goneByTheEnd - 1} by its end)");
                        break;
                    }
                }

                for (var v = 0; v < gone; v++)
                {
                    if (set.Contains(v))
                    {
                        failures.Enqueue($"value {v} removed before the match began is present");
                        break;
                    }
                }
            }
        })
        { IsBackground = true }).ToList();
        threads.ForEach(t => t.Start());

        start.Set();
        for (var v = 0; v < values; v++)
        {
            matcher.Add(patterns[v % patterns.Length], v);
            Volatile.Write(ref published, v + 1);
        }

        for (var v = 0; v < values; v++)
        {
            matcher.Remove(patterns[v % patterns.Length], v);
            Volatile.Write(ref removed, v + 1);
        }

        stop.Set();
        threads.ForEach(t => t.Join());
        Assert.Empty(failures);
        Assert.Empty(matcher.Match(topic));
    }

    private static readonly string[] ConcreteSegments = ["process", "lifecycle", "health", "collector", "a", "b", "c1"];

    private static string RandomPattern(Random random)
    {
        var depth = random.Next(1, 6);
        var parts = new List<string>(depth);
        for (var i = 0; i < depth; i++)
        {
            var roll = random.Next(10);
            if (i == depth - 1 && roll == 0)
            {
                parts.Add("#");
            }
            else if (roll <= 2)
            {
                parts.Add("+");
            }
            else
            {
                parts.Add(i == 0 ? (random.Next(2) == 0 ? "events" : "control") : ConcreteSegments[random.Next(ConcreteSegments.Length)]);
            }
        }

        var pattern = string.Join('.', parts);
        Assert.True(TopicRules.IsValidPattern(pattern), pattern);
        return pattern;
    }

    private static string RandomTopic(Random random)
    {
        var depth = random.Next(1, 7);
        var parts = new List<string>(depth) { random.Next(2) == 0 ? "events" : "control" };
        for (var i = 1; i < depth; i++)
        {
            parts.Add(ConcreteSegments[random.Next(ConcreteSegments.Length)]);
        }

        var topic = string.Join('.', parts);
        Assert.True(TopicRules.IsValidTopic(topic), topic);
        return topic;
    }

    private static int[] BruteForce(IEnumerable<(string Pattern, int Value)> entries, string topic) =>
        [.. entries.GroupBy(e => e.Pattern, StringComparer.Ordinal)
            .Where(g => TopicRules.Matches(g.Key, topic))
            .SelectMany(g => g.Select(e => e.Value))
            .Distinct()
            .Order()];
}
