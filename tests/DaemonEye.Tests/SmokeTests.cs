using DaemonEye.Topics;

namespace DaemonEye.Tests;

public sealed class SmokeTests
{
    [Fact]
    public void Hash_matches_its_parent() => Assert.True(TopicRules.Matches("events.#", "events"));
}
