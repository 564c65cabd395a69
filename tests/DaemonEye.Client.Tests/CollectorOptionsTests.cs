namespace DaemonEye.Client.Tests;

/// <summary>CollectorOptions.BusyPoll: the collector's window, the operator's override, and the messages for bad values.</summary>
public sealed class CollectorOptionsTests
{
    private const string Variable = CollectorOptions.BusyPollVariable;

    [Fact]
    public void The_collectors_busy_poll_window_stands_unless_the_operator_sets_one()
    {
        Assert.Equal(TimeSpan.FromMicroseconds(200), Applied(null).BusyPoll);
        Assert.Equal(TimeSpan.Zero, Applied("0").BusyPoll);
        Assert.Equal(TimeSpan.FromMicroseconds(750), Applied("750").BusyPoll);
        Assert.Empty(BusyPollProblems(Applied("750")));
        Assert.Equal(TimeSpan.Zero, new CollectorOptions().BusyPoll); // off unless a collector asks
    }

    [Theory]
    [InlineData("-5")]
    [InlineData("fast")]
    [InlineData("2e3")]
    [InlineData(" 200")]
    public void An_unreadable_operator_value_is_named_with_what_is_allowed(string value)
    {
        var problem = Assert.Single(BusyPollProblems(Applied(value)));
        Assert.Equal($"{Variable} is '{value}'; allowed: 0 (off) to 10000 (microseconds)", problem);
    }

    [Fact]
    public void A_window_over_ten_milliseconds_is_named_from_the_environment_or_the_code()
    {
        var problem = Assert.Single(BusyPollProblems(Applied("10001")));
        Assert.Equal($"BusyPoll is 10001 µs (from {Variable} when that is set); allowed: 0 (off) to 10000 µs", problem);

        var options = new CollectorOptions { CollectorId = "c", BusyPoll = TimeSpan.FromMilliseconds(11) };
        Assert.StartsWith("BusyPoll is 11000 µs", Assert.Single(BusyPollProblems(options)), StringComparison.Ordinal);
    }

    private static CollectorOptions Applied(string? value)
    {
        var options = new CollectorOptions { CollectorId = "c", BusyPoll = TimeSpan.FromMicroseconds(200) };
        options.ApplyEnvironment(name => name == Variable ? value : null);
        return options;
    }

    private static List<string> BusyPollProblems(CollectorOptions options) =>
        [.. options.Validate().Where(p => p.Contains("BUSY_POLL", StringComparison.Ordinal) || p.StartsWith("BusyPoll", StringComparison.Ordinal))];
}
