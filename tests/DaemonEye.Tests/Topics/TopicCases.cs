namespace DaemonEye.Tests.Topics;

/// <summary>The tables of topics, patterns and match pairs shared by the rules and matcher tests.</summary>
public static class TopicCases
{
    /// <summary>A segment of <paramref name="length"/> characters.</summary>
    public static string Segment(int length, char c = 'a') => new(c, length);

    /// <summary>"events" plus segments of 64, 64, 64 and then <paramref name="lastLength"/> characters: 202 + lastLength bytes.</summary>
    public static string OfLength(int totalBytes, string root = "events")
    {
        var head = $"{root}.{Segment(64)}.{Segment(64, 'b')}.{Segment(64, 'c')}.";
        return head + Segment(totalBytes - head.Length, 'd');
    }

    public static string Segments(int count, string root = "events", string segment = "x") =>
        string.Join('.', [root, .. Enumerable.Repeat(segment, count - 1)]);

    public static TheoryData<string> ValidTopics => new()
    {
        "events",
        "control",
        "events.process.lifecycle",
        "events.process.metadata",
        "control.collector.procmond",
        "control.health.heartbeat.procmond-1",
        "events.a_b-c.0.9",
        "events.-._",
        Segments(8),
        OfLength(255),
        OfLength(255, "control"),
        $"events.{Segment(64)}",
        $"events.{Segment(64)}.{Segment(64)}",
    };

    public static TheoryData<string> ValidPatterns
    {
        get
        {
            var data = new TheoryData<string>
            {
                "#",
                "+",
                "+.#",
                "+.+",
                "events.#",
                "control.#",
                "events.process.+",
                "events.+.lifecycle",
                "+.process.lifecycle",
                "control.health.heartbeat.+",
                Segments(8, segment: "+"),
                Segments(7, segment: "+") + ".#",
                Segments(8, "+", "+"),
                "+.x.x.x.x.x.x.#",
                $"events.+.{Segment(64)}.#",
            };
            foreach (var topic in ValidTopics)
            {
                data.Add(topic);
            }

            return data;
        }
    }

    /// <summary>Invalid for both topics and patterns: value, segment number (0 = whole value), and fragments the error must contain.</summary>
    public static TheoryData<string, int, string[]> InvalidForBoth => new()
    {
        { "", 0, ["empty"] },
        { ".events", 1, ["segment 1", "empty", "character 1"] },
        { "events.", 2, ["segment 2", "empty", "character 8"] },
        { "events..process", 2, ["segment 2", "empty", "character 8"] },
        { "Events.process", 1, ["segment 1", "'E'", "character 1", "upper-case"] },
        { "events.Process", 2, ["segment 2", "'P'", "character 8", "upper-case"] },
        { "events.pro cess", 2, ["segment 2", "U+0020", "character 11"] },
        { "events.process\t", 2, ["segment 2", "U+0009", "character 15"] },
        { "events.procés", 2, ["segment 2", "'é'", "character 12"] },
        { "events.process/lifecycle", 2, ["segment 2", "'/'", "character 15"] },
        { "events.process.lifecycle!", 3, ["segment 3", "'!'", "character 25"] },
        { "foo.process", 1, ["'foo'", "segment 1", "character 1", "'events'", "'control'"] },
        { "eventsx", 1, ["'eventsx'", "segment 1", "'events'"] },
        { Segments(9), 9, ["9 segments", "segment 9", "at most 8", "character 22"] },
        { OfLength(256), 5, ["256 bytes", "at most 255", "segment 5", "character 256"] },
        { $"events.{Segment(65)}", 2, ["segment 2", "65 characters", "at most 64", "character 8"] },
        { $"events.process.{Segment(65)}.x", 3, ["segment 3", "65 characters", "character 16"] },
    };

    public static TheoryData<string, int, string[]> InvalidTopicsOnly => new()
    {
        { "events.process.+", 3, ["segment 3", "'+'", "character 16", "pattern"] },
        { "events.#", 2, ["segment 2", "'#'", "character 8", "pattern"] },
        { "+.process", 1, ["segment 1", "'+'", "character 1"] },
        { "#", 1, ["segment 1", "'#'", "character 1"] },
        { "events.proc*", 2, ["segment 2", "'*'", "character 12"] },
        { "events.*", 2, ["segment 2", "'*'", "character 8"] },
        { "events.proc+", 2, ["segment 2", "'+'", "character 12"] },
    };

    public static TheoryData<string, int, string[]> InvalidPatternsOnly => new()
    {
        { "events.*", 2, ["segment 2", "'*'", "character 8", "'+'"] },
        { "*", 1, ["segment 1", "'*'", "character 1", "'+'"] },
        { "events.process.*", 3, ["segment 3", "'*'", "character 16", "'+'"] },
        { "events.proc*", 2, ["segment 2", "'*'", "character 12", "'+'"] },
        { "events.proc+", 2, ["segment 2", "'+'", "character 12", "whole segment"] },
        { "events.+x", 2, ["segment 2", "'+'", "character 8", "whole segment"] },
        { "events.++", 2, ["segment 2", "'+'", "character 8", "whole segment"] },
        { "events.#x", 2, ["segment 2", "'#'", "character 8", "whole segment"] },
        { "events.x#", 2, ["segment 2", "'#'", "character 9", "whole segment"] },
        { "events.##", 2, ["segment 2", "'#'", "character 8", "whole segment"] },
        { "events.#.process", 2, ["segment 2", "'#'", "character 8", "last"] },
        { "#.events", 1, ["segment 1", "'#'", "character 1", "last"] },
        { "#.#", 1, ["segment 1", "'#'", "last"] },
        { "foo.#", 1, ["'foo'", "segment 1", "'+'", "'#'"] },
        { "events.+.", 3, ["segment 3", "empty", "character 10"] },
        { Segments(8, segment: "+") + ".#", 9, ["segment 9", "at most 8"] },
        { OfLength(256).Replace(".bbbb", ".+.bb", StringComparison.Ordinal), 6, ["256 bytes", "at most 255", "segment 6", "character 256"] },
    };

    /// <summary>Pattern, topic, whether the pattern matches the topic.</summary>
    public static TheoryData<string, string, bool> MatchPairs => new()
    {
        // Concrete patterns match only themselves, segment for segment.
        { "events.process.lifecycle", "events.process.lifecycle", true },
        { "events.process.lifecycle", "events.process.metadata", false },
        { "events.process", "events.processes", false },
        { "events.proc", "events.process", false },
        { "events.process", "events.process.lifecycle", false },
        { "events.process.lifecycle", "events.process", false },
        { "control.collector", "control.collector.procmond", false },
        { "events", "events", true },
        { "events", "control", false },

        // '+' matches exactly one segment, never zero and never two.
        { "events.process.+", "events.process.lifecycle", true },
        { "events.process.+", "events.process", false },
        { "events.process.+", "events.process.lifecycle.extra", false },
        { "events.+", "events", false },
        { "events.+.lifecycle", "events.process.lifecycle", true },
        { "events.+.lifecycle", "events.network.lifecycle", true },
        { "events.+.lifecycle", "events.process.metadata", false },
        { "events.+.lifecycle", "events.lifecycle", false },
        { "+", "events", true },
        { "+", "control", true },
        { "+", "events.process", false },
        { "+.+", "events", false },
        { "+.+", "control.health", true },
        { "+.process.lifecycle", "events.process.lifecycle", true },
        { "+.process.lifecycle", "control.process.lifecycle", true },
        { "control.collector.+", "control.collector.procmond", true },
        { "control.collector.+", "control.collector", false },
        { "control.health.heartbeat.+", "control.health.heartbeat.procmond", true },
        { "control.health.heartbeat.+", "control.health.heartbeat", false },
        { "control.health.+.+", "control.health.heartbeat.procmond", true },
        { Segments(8, segment: "+"), Segments(8), true },
        { Segments(8, segment: "+"), Segments(7), false },

        // '#' matches zero or more trailing segments: it matches its parent.
        { "#", "events", true },
        { "#", "control.health.heartbeat.procmond", true },
        { "#", Segments(8), true },
        { "events.#", "events", true },
        { "events.#", "events.process", true },
        { "events.#", "events.process.lifecycle", true },
        { "events.#", Segments(8), true },
        { "events.#", "control", false },
        { "events.#", "control.events", false },
        { "events.process.#", "events.process", true },
        { "events.process.#", "events.process.lifecycle", true },
        { "events.process.#", "events", false },
        { "events.process.#", "events.processes.lifecycle", false },
        { "events.proc.#", "events.process", false },
        { "control.health.#", "control.health.heartbeat.procmond", true },
        { "control.health.#", "control.collector.procmond", false },
        { "+.#", "events", true },
        { "+.#", "control.collector.procmond", true },
        { "+.+.#", "events", false },
        { "+.+.#", "events.process", true },
        { "+.process.#", "events.process", true },
        { "+.process.#", "control.process.a.b", true },
        { "+.process.#", "events.network.process", false },
        { Segments(7, segment: "+") + ".#", Segments(7), true },
        { Segments(7, segment: "+") + ".#", Segments(8), true },
        { Segments(7, segment: "+") + ".#", Segments(6), false },
    };
}
