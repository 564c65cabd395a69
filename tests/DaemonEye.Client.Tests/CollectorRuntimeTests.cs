using DaemonEye.Networking;

namespace DaemonEye.Client.Tests;

/// <summary>The opt-ins apply only where the operator has not chosen already.</summary>
public sealed class CollectorRuntimeTests
{
    [Fact]
    public void Inline_socket_completions_are_switched_on_unless_the_environment_already_says()
    {
        var name = CollectorRuntime.InlineCompletionsVariable;
        WithVariableRestored(name, () =>
        {
            Environment.SetEnvironmentVariable(name, null);
            Assert.True(CollectorRuntime.UseInlineSocketCompletions());
            Assert.Equal("1", Environment.GetEnvironmentVariable(name));

            Environment.SetEnvironmentVariable(name, "0");
            Assert.False(CollectorRuntime.UseInlineSocketCompletions());
            Assert.Equal("0", Environment.GetEnvironmentVariable(name));

            Environment.SetEnvironmentVariable(name, "1");
            Assert.True(CollectorRuntime.UseInlineSocketCompletions());
        });
    }

    [Fact]
    public void Busy_polling_takes_the_collectors_window_unless_the_operator_set_one_and_a_bad_value_is_named()
    {
        var name = CollectorRuntime.BusyPollVariable;
        var window = TimeSpan.FromMicroseconds(200);
        WithVariableRestored(name, () =>
        {
            Environment.SetEnvironmentVariable(name, null);
            Assert.Equal(window, CollectorRuntime.BusyPollInEffect(window));

            Environment.SetEnvironmentVariable(name, "0");
            Assert.Equal(TimeSpan.Zero, CollectorRuntime.BusyPollInEffect(window));

            Environment.SetEnvironmentVariable(name, "750");
            Assert.Equal(TimeSpan.FromMicroseconds(750), CollectorRuntime.BusyPollInEffect(window));

            foreach (var bad in new[] { "-5", "10001", "fast", "2e3" })
            {
                Environment.SetEnvironmentVariable(name, bad);
                var error = Assert.Throws<ArgumentException>(() => CollectorRuntime.BusyPollInEffect(window));
                Assert.StartsWith($"{name} is '{bad}'; allowed: 0 (off) to 10000 (microseconds)", error.Message, StringComparison.Ordinal);
            }

            Environment.SetEnvironmentVariable(name, null);
            var tooLong = Assert.Throws<ArgumentOutOfRangeException>(() => CollectorRuntime.BusyPollInEffect(TimeSpan.FromMilliseconds(11)));
            Assert.Contains("allowed: 0 (off) to 10000 µs", tooLong.Message, StringComparison.Ordinal);
        });
    }

    [Fact]
    public void Busy_polling_sets_the_window_of_the_process_reactor()
    {
        var reactor = SocketReactor.Shared;
        var was = reactor.BusyPoll;
        try
        {
            WithVariableRestored(CollectorRuntime.BusyPollVariable, () =>
            {
                Environment.SetEnvironmentVariable(CollectorRuntime.BusyPollVariable, null);
                Assert.Equal(TimeSpan.FromMicroseconds(300), CollectorRuntime.UseBusyPolling(TimeSpan.FromMicroseconds(300)));
                Assert.Equal(TimeSpan.FromMicroseconds(300), reactor.BusyPoll);
            });
        }
        finally
        {
            reactor.BusyPoll = was;
        }
    }

    /// <summary>Runs <paramref name="body"/>, then puts the environment variable back as it was.</summary>
    private static void WithVariableRestored(string name, Action body)
    {
        var before = Environment.GetEnvironmentVariable(name);
        try
        {
            body();
        }
        finally
        {
            Environment.SetEnvironmentVariable(name, before);
        }
    }
}
