namespace DaemonEye.Benchmarks;

/// <summary>
/// A realistic set of 10,000 subscriptions for one agent: per-collector control and health
/// subscriptions dominate; event consumers subscribe to concrete topics and a few wildcards.
/// </summary>
public static class Subscriptions
{
    public const int CollectorCount = 2500;

    public static readonly string[] Domains = ["process", "network", "filesystem", "performance"];

    public static readonly string[] Kinds = ["lifecycle", "metadata", "tree", "integrity", "anomaly", "batch"];

    public static string CollectorId(int i) => $"collector-{i:D4}";

    /// <summary>(pattern, subscription id) pairs; 10,000 of them, each id distinct.</summary>
    public static List<(string Pattern, int Id)> Create(int seed = 42)
    {
        var random = new Random(seed);
        var list = new List<(string, int)>(10_000);
        void Add(string pattern) => list.Add((pattern, list.Count));

        for (var i = 0; i < CollectorCount; i++)
        {
            var id = CollectorId(i);
            Add($"control.collector.{id}");            // the collector's own control topic
            Add($"control.health.heartbeat.{id}");     // its supervisor
            Add($"control.health.+.{id}");             // its health: heartbeat, status, diagnostics
        }

        for (var i = 0; i < 2000; i++)
        {
            Add($"control.collector.{CollectorId(i)}.#"); // tools watching one collector's control traffic
        }

        for (var i = 0; i < 400; i++)
        {
            Add($"events.{Domains[random.Next(Domains.Length)]}.{Kinds[random.Next(Kinds.Length)]}");
        }

        string[] plus = ["events.+.lifecycle", "events.process.+", "+.process.lifecycle", "events.+.anomaly", "events.network.+", "control.collector.+", "control.health.heartbeat.+"];
        for (var i = 0; i < 60; i++)
        {
            Add(plus[i % plus.Length]);
        }

        string[] hash = ["events.#", "events.process.#", "control.health.#", "control.#", "#", "events.network.#"];
        for (var i = 0; i < 40; i++)
        {
            Add(hash[i % hash.Length]);
        }

        return list;
    }

    /// <summary>Published topics in a realistic proportion: mostly events, some control and heartbeats.</summary>
    public static string[] Topics(int count, int seed = 7)
    {
        var random = new Random(seed);
        var topics = new string[count];
        for (var i = 0; i < count; i++)
        {
            topics[i] = random.Next(4) switch
            {
                0 => $"control.collector.{CollectorId(random.Next(CollectorCount))}",
                1 => $"control.health.heartbeat.{CollectorId(random.Next(CollectorCount))}",
                _ => $"events.{Domains[random.Next(Domains.Length)]}.{Kinds[random.Next(Kinds.Length)]}",
            };
        }

        return topics;
    }
}
