using DaemonEye.Configuration;
using DaemonEye.Hosting;
using Microsoft.Extensions.Configuration;

namespace DaemonEye.Tests.Configuration;

/// <summary>
/// The start-up checks beside the values: socket directories (and the advice, which must never
/// break the host), collector executables, rule files, YAML errors with their line, and
/// <c>config show</c> on values of the wrong type. End to end: OperatorChecksEndToEndTests.
/// </summary>
public sealed class StartupChecksTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("de-checks-");

    public void Dispose() => _dir.Delete(recursive: true);

    private string Sub(string name, UnixFileMode mode)
    {
        var path = Path.Combine(_dir.FullName, name);
        Directory.CreateDirectory(path);
        File.SetUnixFileMode(path, mode);
        return path;
    }

    private const UnixFileMode Private = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    [Fact]
    public void A_shared_sticky_directory_like_tmp_gets_a_private_subdirectory_as_advice_never_a_chmod()
    {
        var shared = Sub("shared", (UnixFileMode)0b1_111_111_111);

        var problem = SocketDirectory.Problem(shared, "bus", null);

        Assert.Equal(
            $"the bus socket directory '{shared}' is writable by group or others (mode 01777); it must be 0700 so no other user can replace the socket. '{shared}' is shared with other users and programs: do not change its mode; give the socket a private directory instead, for example broker.socket_path: {shared}/daemoneye/eventbus.sock (the agent creates {shared}/daemoneye/, mode 0700)",
            problem);
    }

    [Fact]
    public void A_private_directory_open_to_others_gets_a_private_subdirectory_or_a_chmod_of_it()
    {
        var open = Sub("open", (UnixFileMode)0b111_101_101);

        var problem = SocketDirectory.Problem(open, "IPC", null);

        Assert.NotNull(problem);
        Assert.StartsWith($"the IPC socket directory '{open}' has mode 0755 and group", problem, StringComparison.Ordinal);
        Assert.EndsWith($"Give the socket a private directory, for example ipc.socket_path: {open}/daemoneye/ipc.sock (the agent creates {open}/daemoneye/, mode 0700), or, if nothing but the agent uses '{open}': chmod 700 {open}", problem, StringComparison.Ordinal);
    }

    [Fact]
    public void A_private_directory_and_a_missing_one_the_agent_can_create_pass()
    {
        Assert.Null(SocketDirectory.Problem(Sub("mine", Private), "bus", null));
        Assert.Null(SocketDirectory.Problem(Path.Combine(_dir.FullName, "not-yet", "run"), "bus", null));
    }

    [Fact]
    public void Collector_executables_are_resolved_like_the_agent_does_and_must_exist_and_be_executable()
    {
        var agentDirectory = Sub("agent", Private);
        Directory.CreateDirectory(Path.Combine(agentDirectory, "collectors"));
        File.WriteAllText(Path.Combine(agentDirectory, "collectors", "c.dll"), string.Empty);
        var script = Path.Combine(_dir.FullName, "script");
        File.WriteAllText(script, "#!/bin/sh\n");
        File.SetUnixFileMode(script, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var context = new StartupCheckContext(Sub("work", Private), agentDirectory);
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["collectors:0:id"] = "found",
            ["collectors:0:executable"] = "collectors/c.dll",
            ["collectors:1:id"] = "missing",
            ["collectors:1:executable"] = "collectors/none.dll",
            ["collectors:2:id"] = "plain",
            ["collectors:2:executable"] = script,
            ["collectors:3:id"] = "off",
            ["collectors:3:executable"] = "/no/such/file",
            ["collectors:3:enabled"] = "false",
            ["broker:socket_path"] = Path.Combine(_dir.FullName, "run", "bus.sock"),
            ["coordination:rules:directory"] = _dir.FullName,
        }).Build();

        var report = StartupChecks.Run(configuration, context);

        Assert.Equal(
            [
                $"collectors[1].executable 'collectors/none.dll' does not exist (looked in the working directory {context.WorkingDirectory} and the agent's directory {agentDirectory}); collector 'missing': the agent cannot start it",
                $"collectors[2].executable '{script}' is not executable by this user (uid {Posix.EffectiveUserId}, mode 0600): chmod +x {script}; collector 'plain': the agent cannot start it",
            ],
            report.Errors);
        Assert.Contains("collectors[3].executable '/no/such/file' does not exist; collector 'off': it is disabled, but `collectors start` would fail", report.Warnings);
    }

    [Fact]
    public void A_file_that_is_not_yaml_is_reported_with_its_line_and_column()
    {
        var file = Path.Combine(_dir.FullName, "bad.yaml");
        File.WriteAllText(file, "broker:\n  max_subscribers: 5\n bad_indent: 1\n");

        var exception = Assert.ThrowsAny<Exception>(() => new ConfigurationBuilder().AddDaemonEyeConfiguration(file).Build());

        Assert.Matches($@"^{System.Text.RegularExpressions.Regex.Escape(file)}:3:\d+: not valid YAML: ", ConfigurationLoader.DescribeLoadFailure(exception, file));
    }

    [Fact]
    public void Config_show_shows_values_of_the_wrong_type_as_written_and_never_throws()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["rpc:default_timeout_seconds"] = "abc",
            ["rpc:max_pending_requests"] = "7",
            ["security:allowed_uids:0"] = "minus-one",
        }).Build();

        var values = EffectiveConfiguration.Describe(configuration);

        var timeout = Assert.Single(values, v => v.Section == "rpc" && v.Key == "default_timeout_seconds");
        Assert.Equal("abc", timeout.Value);
        Assert.EndsWith("; invalid", timeout.Source, StringComparison.Ordinal);
        Assert.Equal(7, Assert.Single(values, v => v.Section == "rpc" && v.Key == "max_pending_requests").Value);
        Assert.Contains(values, v => v.Section == "security" && v.Key == "allowed_uids");
    }
}
