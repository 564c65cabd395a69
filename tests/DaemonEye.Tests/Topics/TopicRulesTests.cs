using DaemonEye.Topics;

namespace DaemonEye.Tests.Topics;

public sealed class TopicRulesTests
{
    [Theory]
    [MemberData(nameof(TopicCases.ValidTopics), MemberType = typeof(TopicCases))]
    public void Valid_topics_are_accepted(string topic)
    {
        var result = TopicRules.ValidateTopic(topic);

        Assert.True(result.IsValid, result.Error);
        Assert.Equal(TopicValidation.Valid, result);
        Assert.Equal(topic, TopicRules.EnsureTopic(topic));
    }

    [Theory]
    [MemberData(nameof(TopicCases.ValidPatterns), MemberType = typeof(TopicCases))]
    public void Valid_patterns_are_accepted(string pattern)
    {
        var result = TopicRules.ValidatePattern(pattern);

        Assert.True(result.IsValid, result.Error);
        Assert.Equal(pattern, TopicRules.EnsurePattern(pattern));
    }

    [Theory]
    [MemberData(nameof(TopicCases.InvalidForBoth), MemberType = typeof(TopicCases))]
    [MemberData(nameof(TopicCases.InvalidTopicsOnly), MemberType = typeof(TopicCases))]
    public void Invalid_topics_are_rejected_saying_what_and_where(string topic, int segment, string[] fragments)
    {
        var result = TopicRules.ValidateTopic(topic);

        AssertInvalid(result, segment, fragments);
        var ex = Assert.Throws<TopicFormatException>(() => TopicRules.EnsureTopic(topic));
        Assert.Equal(result.Error, ex.Message);
    }

    [Theory]
    [MemberData(nameof(TopicCases.InvalidForBoth), MemberType = typeof(TopicCases))]
    [MemberData(nameof(TopicCases.InvalidPatternsOnly), MemberType = typeof(TopicCases))]
    public void Invalid_patterns_are_rejected_saying_what_and_where(string pattern, int segment, string[] fragments)
    {
        var result = TopicRules.ValidatePattern(pattern);

        AssertInvalid(result, segment, fragments);
        var ex = Assert.Throws<TopicFormatException>(() => TopicRules.EnsurePattern(pattern));
        Assert.Equal(result.Error, ex.Message);
    }

    [Fact]
    public void Null_is_rejected_as_empty()
    {
        Assert.Contains("empty", TopicRules.ValidateTopic(null).Error, StringComparison.Ordinal);
        Assert.Contains("empty", TopicRules.ValidatePattern(null).Error, StringComparison.Ordinal);
        Assert.Throws<TopicFormatException>(() => TopicRules.EnsureTopic(null));
    }

    [Theory]
    [InlineData("events.*")]
    [InlineData("*")]
    [InlineData("control.health.*.procmond")]
    public void Star_in_a_pattern_suggests_plus(string pattern)
    {
        var error = TopicRules.ValidatePattern(pattern).Error;

        Assert.NotNull(error);
        Assert.Contains("'*'", error, StringComparison.Ordinal);
        Assert.Contains("use '+'", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Eight_segments_are_allowed_and_nine_are_not()
    {
        Assert.True(TopicRules.IsValidTopic(TopicCases.Segments(8)));
        Assert.False(TopicRules.IsValidTopic(TopicCases.Segments(9)));
        Assert.True(TopicRules.IsValidPattern(TopicCases.Segments(8, segment: "+")));
        Assert.False(TopicRules.IsValidPattern(TopicCases.Segments(9, segment: "+")));
        Assert.True(TopicRules.IsValidPattern(TopicCases.Segments(7, segment: "+") + ".#"));
        Assert.False(TopicRules.IsValidPattern(TopicCases.Segments(8, segment: "+") + ".#"));
    }

    [Fact]
    public void Two_hundred_fifty_five_bytes_are_allowed_and_256_are_not()
    {
        var ok = TopicCases.OfLength(255);
        var tooLong = TopicCases.OfLength(256);

        Assert.Equal(255, ok.Length);
        Assert.Equal(256, tooLong.Length);
        Assert.True(TopicRules.IsValidTopic(ok));
        Assert.True(TopicRules.IsValidPattern(ok));
        Assert.False(TopicRules.IsValidTopic(tooLong));
        Assert.False(TopicRules.IsValidPattern(tooLong));
    }

    [Fact]
    public void Bytes_are_counted_in_utf8_not_in_characters()
    {
        // 250 characters but 256 bytes: six two-byte characters push it over the limit.
        var value = TopicCases.OfLength(250)[..244] + "éééééé";

        var error = TopicRules.ValidateTopic(value).Error;

        Assert.Equal(250, value.Length);
        Assert.NotNull(error);
        Assert.Contains("256 bytes", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Sixty_four_characters_in_a_segment_are_allowed_and_65_are_not()
    {
        Assert.True(TopicRules.IsValidTopic($"events.{TopicCases.Segment(64)}"));
        Assert.False(TopicRules.IsValidTopic($"events.{TopicCases.Segment(65)}"));
        Assert.True(TopicRules.IsValidPattern($"events.{TopicCases.Segment(64)}.#"));
        Assert.False(TopicRules.IsValidPattern($"events.{TopicCases.Segment(65)}.#"));
    }

    [Theory]
    [MemberData(nameof(TopicCases.MatchPairs), MemberType = typeof(TopicCases))]
    public void Matches_follows_the_match_table(string pattern, string topic, bool expected)
    {
        Assert.True(TopicRules.IsValidPattern(pattern), pattern);
        Assert.True(TopicRules.IsValidTopic(topic), topic);

        Assert.Equal(expected, TopicRules.Matches(pattern, topic));
    }

    [Theory]
    [InlineData("events.process.lifecycle", false)]
    [InlineData("events.#", true)]
    [InlineData("+", true)]
    [InlineData("events.+.lifecycle", true)]
    public void HasWildcard_tells_concrete_from_wildcard_patterns(string pattern, bool expected) =>
        Assert.Equal(expected, TopicRules.HasWildcard(pattern));

    private static void AssertInvalid(TopicValidation result, int segment, string[] fragments)
    {
        Assert.False(result.IsValid);
        Assert.NotNull(result.Error);
        foreach (var fragment in fragments)
        {
            Assert.Contains(fragment, result.Error, StringComparison.Ordinal);
        }

        Assert.Equal(segment, result.Segment);
        var character = fragments.FirstOrDefault(f => f.StartsWith("character ", StringComparison.Ordinal));
        if (character is not null)
        {
            Assert.Equal(int.Parse(character["character ".Length..], System.Globalization.CultureInfo.InvariantCulture) - 1, result.Offset);
        }
    }
}
