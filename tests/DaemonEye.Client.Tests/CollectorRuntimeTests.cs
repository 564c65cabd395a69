namespace DaemonEye.Client.Tests;

/// <summary>The opt-in sets the runtime's switch only where the operator has not chosen already.</summary>
public sealed class CollectorRuntimeTests
{
    [Fact]
    public void Inline_socket_completions_are_switched_on_unless_the_environment_already_says()
    {
        var name = CollectorRuntime.InlineCompletionsVariable;
        var before = Environment.GetEnvironmentVariable(name);
        try
        {
            Environment.SetEnvironmentVariable(name, null);
            Assert.True(CollectorRuntime.UseInlineSocketCompletions());
            Assert.Equal("1", Environment.GetEnvironmentVariable(name));

            Environment.SetEnvironmentVariable(name, "0");
            Assert.False(CollectorRuntime.UseInlineSocketCompletions());
            Assert.Equal("0", Environment.GetEnvironmentVariable(name));

            Environment.SetEnvironmentVariable(name, "1");
            Assert.True(CollectorRuntime.UseInlineSocketCompletions());
        }
        finally
        {
            Environment.SetEnvironmentVariable(name, before);
        }
    }
}
