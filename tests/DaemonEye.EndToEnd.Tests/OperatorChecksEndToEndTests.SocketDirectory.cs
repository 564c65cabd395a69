using System.Diagnostics;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// The socket directory checks besides /tmp: a directory open to group or others, or owned by
/// another user, is refused by <c>config validate</c> in exactly the agent's words.
/// </summary>
public sealed partial class OperatorChecksEndToEndTests
{
    [Theory]
    [InlineData(0b111_111_000, "is writable by group or others (mode 0770)")]
    [InlineData(0b111_101_101, "has mode 0755 and group")]
    public async Task A_socket_directory_open_to_others_is_refused_by_config_validate_in_the_agents_words(int mode, string expected)
    {
        using var directory = new TempDirectory();
        var run = Directory.CreateDirectory(Path.Combine(directory.Path, "run")).FullName;
        File.SetUnixFileMode(run, (UnixFileMode)mode);
        await SameRefusalAsync(directory.Path, Path.Combine(run, "bus.sock"), $"the bus socket directory '{run}' {expected}");
    }

    [RootFact("chown to uid 65534")]
    public async Task A_socket_directory_owned_by_another_user_is_refused_by_config_validate_in_the_agents_words()
    {
        using var directory = new TempDirectory();
        var run = Directory.CreateDirectory(Path.Combine(directory.Path, "run")).FullName;
        File.SetUnixFileMode(run, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        using (var chown = Process.Start("chown", ["65534", run]))
        {
            await chown.WaitForExitAsync();
            Assert.Equal(0, chown.ExitCode);
        }

        await SameRefusalAsync(directory.Path, Path.Combine(run, "bus.sock"), $"the bus socket directory '{run}' is owned by uid 65534, not by the agent's user");
    }

    /// <summary>The agent exits 2 and config validate exits 2 on the socket path, with the same line, which contains <paramref name="expected"/>.</summary>
    private static async Task SameRefusalAsync(string workingDirectory, string socket, string expected)
    {
        var env = new Dictionary<string, string> { ["DAEMONEYE_BROKER__SOCKET_PATH"] = socket };

        var (agentCode, agentOutput) = await AgentProcess.RunToExitAsync(env, [], Patience);
        var (cliCode, _, cliError) = await Cli.RunAsync(workingDirectory, env, "config", "validate");

        Assert.Equal(2, agentCode);
        Assert.Equal(2, cliCode);
        var agentLine = Assert.Single(agentOutput.Split('\n'), l => l.Contains(expected, StringComparison.Ordinal));
        var cliLine = Assert.Single(cliError.Split('\n'), l => l.Contains(expected, StringComparison.Ordinal));
        Assert.Equal(agentLine.Trim()["- ".Length..], cliLine["error: ".Length..]);
        Assert.EndsWith("(environment DAEMONEYE_BROKER__SOCKET_PATH)", cliLine, StringComparison.Ordinal);
        NoStackTrace(agentOutput);
    }
}
