using DaemonEye.Cli;

namespace DaemonEye.Client.Tests;

/// <summary>The CLI's command parsing and exit codes, invoked in-process.</summary>
public sealed class CliTests
{
    private static async Task<(int Code, string Out, string Err)> RunAsync(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        var code = await CliApplication.InvokeAsync(args, output, error);
        return (code, output.ToString(), error.ToString());
    }

    [Theory]
    [InlineData("'--nonsense'", "topic", "validate", "events.a", "--nonsense")]
    [InlineData("'inline' not recognized", "bench", "rpc", "--collector", "x", "--completions", "inline")]
    [InlineData("--collector", "bench", "rpc")]
    [InlineData("--rate is 0; it must be 1 to 1000000", "bench", "procmond", "--rate", "0")]
    [InlineData("--duration must be positive", "bench", "netmond", "--duration", "0")]
    [InlineData("--exec /nonexistent/true: no such file", "bench", "procmond", "--exec", "/nonexistent/true")]
    [InlineData("--dir", "bench", "fsmond")]
    [InlineData("--dir /nonexistent/dir: no such directory", "bench", "fsmond", "--dir", "/nonexistent/dir")]
    [InlineData("'frobnicate'", "frobnicate")]
    public async Task A_command_line_that_does_not_parse_exits_2_naming_the_problem(string named, params string[] args)
    {
        var (code, _, err) = await RunAsync(args);
        Assert.Equal(2, code);
        Assert.Contains(named, err, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("events.process.lifecycle", 0)]
    [InlineData("control.health.heartbeat", 0)]
    [InlineData("events.*", 2)]
    [InlineData("Events.a", 2)]
    [InlineData("logs.a", 2)]
    [InlineData("events..a", 2)]
    [InlineData("events.+", 2)]
    public async Task Topic_validate_exit_codes(string topic, int expected)
    {
        var (code, _, err) = await RunAsync("topic", "validate", topic);
        Assert.Equal(expected, code);
        Assert.Equal(expected != 0, err.Contains(topic, StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("events.+", 0)]
    [InlineData("events.#", 0)]
    [InlineData("#", 0)]
    [InlineData("events.#.a", 2)]
    [InlineData("events.a+", 2)]
    public async Task Topic_validate_pattern_exit_codes(string pattern, int expected)
    {
        var (code, _, err) = await RunAsync("topic", "validate", "--pattern", pattern);
        Assert.Equal(expected, code);
        if (expected == 2)
        {
            Assert.StartsWith($"invalid pattern '{pattern}':", err, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("events.+.lifecycle", "events.process.lifecycle", 0)]
    [InlineData("events.#", "events", 0)]
    [InlineData("events.+", "events.process.lifecycle", 1)]
    [InlineData("control.#", "events.a", 1)]
    [InlineData("events.*", "events.a", 2)]
    [InlineData("events.#", "events.+", 2)]
    public async Task Topic_match_exit_codes(string pattern, string topic, int expected)
    {
        var (code, _, err) = await RunAsync("topic", "match", pattern, topic);
        Assert.Equal(expected, code);
        Assert.Equal(expected == 2, err.Length > 0);
    }

    [Fact]
    public async Task Publish_without_an_agent_names_the_socket()
    {
        var dir = Directory.CreateTempSubdirectory("de-cli-");
        try
        {
            var socket = Path.Combine(dir.FullName, "bus.sock");
            var config = Path.Combine(dir.FullName, "daemoneye.yaml");
            await File.WriteAllTextAsync(config, $"broker:\n  socket_path: {socket}\n");
            var (code, _, err) = await RunAsync("--config", config, "publish", "events.a", "hi");
            Assert.Equal(3, code);
            Assert.Contains($"agent socket not found at {socket}", err, StringComparison.Ordinal);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task A_missing_config_file_is_named()
    {
        var (code, _, err) = await RunAsync("--config", "/nonexistent/daemoneye.yaml", "publish", "events.a", "hi");
        Assert.Equal(2, code);
        Assert.Contains("/nonexistent/daemoneye.yaml", err, StringComparison.Ordinal);
    }
}
