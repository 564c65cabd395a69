using DaemonEye.Configuration;

namespace DaemonEye.Tests.Configuration;

/// <summary>process_manager.restart_backoff_seconds: the delay before restart n within the window.</summary>
public sealed class ProcessManagerOptionsTests
{
    [Theory]
    [InlineData(5, 1, 5)]
    [InlineData(5, 2, 10)]
    [InlineData(5, 3, 20)]
    [InlineData(5, 4, 40)]
    [InlineData(5, 5, 60)] // capped at 60 s
    [InlineData(5, 50, 60)]
    [InlineData(0.25, 3, 1)]
    [InlineData(90, 1, 90)] // a first delay above 60 s is its own cap
    [InlineData(90, 4, 90)]
    [InlineData(0, 7, 0)]
    public void The_backoff_starts_at_restart_backoff_seconds_and_doubles_up_to_the_cap(double backoffSeconds, int attempt, double expectedSeconds)
    {
        var options = new ProcessManagerOptions { RestartBackoffSeconds = backoffSeconds };

        Assert.Equal(TimeSpan.FromSeconds(expectedSeconds), options.BackoffFor(attempt));
    }
}
