using System.Text.Json;
using DaemonEye.Cli;

namespace DaemonEye.Client.Tests;

/// <summary><c>daemoneye-cli config validate|show</c>, in-process, on real files.</summary>
public sealed class ConfigCommandTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("de-cli-cfg-").FullName;

    private static async Task<(int Code, string Out, string Err)> RunAsync(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        var code = await CliApplication.InvokeAsync(args, output, error);
        return (code, output.ToString(), error.ToString());
    }

    /// <summary>Writes a configuration file whose rules directory exists (an empty one), so the checks find only what the test is about.</summary>
    private string Write(string name, string yaml)
    {
        var path = Path.Combine(_directory, name);
        var rules = Directory.CreateDirectory(Path.Combine(_directory, "rules")).FullName;
        File.WriteAllText(path, $"coordination:\n  rules:\n    directory: {rules}\n{yaml}");
        return path;
    }

    [Fact]
    public async Task Validate_exits_0_for_a_valid_file_and_warns_about_unknown_keys()
    {
        var file = Write("ok.yaml", "broker:\n  max_subscribers: 50\n  max_subscriber: 5\n");

        var (code, output, error) = await RunAsync("config", "validate", file);

        Assert.Equal(0, code);
        Assert.Equal($"{file}: valid, 1 warning(s)", output.Trim());
        Assert.StartsWith($"warning: unknown key broker.max_subscriber (file {file}:6) is ignored; did you mean 'max_subscribers'?", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Validate_exits_2_listing_every_problem()
    {
        var file = Write("bad.yaml", "rpc:\n  max_pending_requests: 0\nlogging:\n  level: chatty\n");

        var (code, output, error) = await RunAsync("config", "validate", file);

        Assert.Equal(2, code);
        Assert.Equal($"{file}: invalid, 2 problem(s)", output.Trim());
        Assert.Equal(
            [$"error: rpc.max_pending_requests is 0; allowed: 1 to 1000000 (file {file}:5)", $"error: logging.level is 'chatty'; allowed: verbose, debug, information, warning, error, fatal (file {file}:7)"],
            error.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
    }

    [Fact]
    public async Task Validate_exits_2_for_a_missing_file_or_broken_yaml()
    {
        var broken = Write("broken.yaml", "broker: [\n");

        var (missingCode, _, missingError) = await RunAsync("config", "validate", Path.Combine(_directory, "absent.yaml"));
        var (brokenCode, _, brokenError) = await RunAsync("config", "validate", broken);

        Assert.Equal(2, missingCode);
        Assert.Contains("absent.yaml' does not exist", missingError, StringComparison.Ordinal);
        Assert.Equal(2, brokenCode);
        Assert.Contains($"{broken}:5:1: not valid YAML", brokenError, StringComparison.Ordinal); // file:line:column
    }

    [Fact]
    public async Task Show_prints_every_key_with_its_value_and_source()
    {
        var file = Write("show.yaml", "broker:\n  max_subscribers: 42\ncollectors:\n  - id: one\n    executable: /bin/true\n    arguments: [a, b]\n");

        var (code, output, _) = await RunAsync("config", "show", "--config", file);

        Assert.Equal(0, code);
        var lines = output.Split('\n').Select(l => l.TrimEnd()).ToList();
        Assert.Contains(lines, l => l.StartsWith("  max_subscribers: 42 ", StringComparison.Ordinal) && l.EndsWith("# file " + file + ":5", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("  max_pending_requests: 1000 ", StringComparison.Ordinal) && l.EndsWith("# default", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("  arguments: [\"a\", \"b\"] ", StringComparison.Ordinal));
        Assert.Contains("collectors[0]:", lines);
    }

    [Fact]
    public async Task Show_json_has_value_and_source_per_key()
    {
        var file = Write("show.yaml", "logging:\n  format: json\n");

        var (code, output, _) = await RunAsync("config", "show", "--json", "--config", file);

        Assert.Equal(0, code);
        using var json = JsonDocument.Parse(output);
        var values = json.RootElement.GetProperty("values");
        Assert.Equal("json", values.GetProperty("logging").GetProperty("format").GetProperty("value").GetString());
        Assert.Equal("file " + file + ":5", values.GetProperty("logging").GetProperty("format").GetProperty("source").GetString());
        Assert.Equal(30, values.GetProperty("rpc").GetProperty("default_timeout_seconds").GetProperty("value").GetInt32());
        Assert.Equal("default", values.GetProperty("rpc").GetProperty("default_timeout_seconds").GetProperty("source").GetString());
        Assert.Equal(0, json.RootElement.GetProperty("errors").GetArrayLength());
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);
}
