using DaemonEye.Configuration;
using Microsoft.Extensions.Configuration;

namespace DaemonEye.Tests.Configuration;

/// <summary>
/// The one validation the agent (start-up, exit 2) and <c>daemoneye-cli config validate</c> run:
/// a table of bad values and the exact message each gets, unknown-key warnings, and sources.
/// </summary>
public sealed class ConfigurationValidatorTests
{
    /// <summary>Key (configuration path), bad value, the message it must produce.</summary>
    public static TheoryData<string, string, string> BadValues => new()
    {
        { "durability:fsync", "never", "durability.fsync is 'never'; allowed: checkpoint, batch" },
        { "durability:max_bytes", "1024", "durability.max_bytes is 1024; allowed: 1048576 (1 MiB) to 1099511627776 (1 TiB)" },
        { "durability:max_ack_pending", "0", "durability.max_ack_pending is 0; allowed: 1 to 1000000" },
        { "mqtt:tcp_port", "65536", "mqtt.tcp_port is 65536; allowed: 1 to 65535, or 0 for any free port" },
        { "mqtt:tcp_role", "operator", "mqtt.tcp_role is 'operator'; allowed: subscriber, client" },
        { "mqtt:max_connections", "0", "mqtt.max_connections is 0; allowed: 1 to 100000" },
        { "mqtt:max_pending_messages", "15", "mqtt.max_pending_messages is 15; allowed: 16 to 10000000" },
        { "mqtt:max_inflight", "0", "mqtt.max_inflight is 0; allowed: 1 to 65000 and below mqtt.max_pending_messages (10000), so that a durable session's messages always fit its queue" },
        { "mqtt:tcp_enabled", "true", "mqtt.tcp_enabled is true but mqtt.users is empty; TCP clients authenticate with a configured user name and password: add mqtt.users.<name>: <password>, or set mqtt.tcp_enabled: false" },
        { "mqtt:users:siem", "short", "mqtt.users.siem is 5 characters; a password is 16 to 256 printable ASCII characters without spaces (e.g. from: openssl rand -hex 16)" },
        { "broker:startup_timeout_seconds", "0", "broker.startup_timeout_seconds is 0; allowed: 1 to 3600" },
        { "broker:startup_timeout_seconds", "soon", "broker.startup_timeout_seconds is 'soon'; allowed: a whole number" },
        { "broker:max_subscribers", "0", "broker.max_subscribers is 0; allowed: 1 to 1000000" },
        { "broker:max_subscribers", "1000001", "broker.max_subscribers is 1000001; allowed: 1 to 1000000" },
        { "broker:message_buffer_size", "0", "broker.message_buffer_size is 0; allowed: 1 to 10000000" },
        { "broker:max_frame_size", "1023", "broker.max_frame_size is 1023; allowed: 1024 to 67108864" },
        { "broker:enable_metrics", "yes", "broker.enable_metrics is 'yes'; allowed: true or false" },
        { "broker:busy_poll_microseconds", "-1", "broker.busy_poll_microseconds is -1; allowed: 0 (off) to 10000" },
        { "broker:busy_poll_microseconds", "10001", "broker.busy_poll_microseconds is 10001; allowed: 0 (off) to 10000" },
        { "broker:metrics_port", "65536", "broker.metrics_port is 65536; allowed: 0 (pick a free port) or 1 to 65535" },
        { "broker:socket_path", "/" + new string('s', 120), $"broker.socket_path is '/{new string('s', 120)}'; a Unix socket path must be at most 107 bytes" },
        { "broker:reserved_collector_connections", "-1", "broker.reserved_collector_connections is -1; allowed: 0 to 10000" },
        { "broker:handshake_timeout_seconds", "0", "broker.handshake_timeout_seconds is 0; allowed: 0.01 to 3600 seconds" },
        { "broker:frame_timeout_seconds", "3601", "broker.frame_timeout_seconds is 3601; allowed: 0.01 to 3600 seconds" },
        { "broker:idle_timeout_seconds", "-1", "broker.idle_timeout_seconds is -1; allowed: 0 (off) or 0.01 to 86400 seconds" },
        { "broker:idle_timeout_seconds", "0.001", "broker.idle_timeout_seconds is 0.001; allowed: 0 (off) or 0.01 to 86400 seconds" },
        { "rpc:default_timeout_seconds", "0", "rpc.default_timeout_seconds is 0; allowed: 1 to 3600" },
        { "rpc:health_check_interval_seconds", "86401", "rpc.health_check_interval_seconds is 86401; allowed: 1 to 86400" },
        { "rpc:enable_correlation_tracking", "maybe", "rpc.enable_correlation_tracking is 'maybe'; allowed: true or false" },
        { "rpc:max_pending_requests", "0", "rpc.max_pending_requests is 0; allowed: 1 to 1000000" },
        { "process_manager:graceful_shutdown_timeout_seconds", "0", "process_manager.graceful_shutdown_timeout_seconds is 0; allowed: 0.01 to 3600 seconds" },
        { "process_manager:force_shutdown_timeout_seconds", "3601", "process_manager.force_shutdown_timeout_seconds is 3601; allowed: 0.01 to 3600 seconds" },
        { "process_manager:health_check_interval_seconds", "0", "process_manager.health_check_interval_seconds is 0; allowed: 0.01 to 86400 seconds" },
        { "process_manager:heartbeat_interval_seconds", "-1", "process_manager.heartbeat_interval_seconds is -1; allowed: 0.01 to 3600 seconds" },
        { "process_manager:startup_timeout_seconds", "0", "process_manager.startup_timeout_seconds is 0; allowed: 0.01 to 3600 seconds" },
        { "process_manager:enable_auto_restart", "on", "process_manager.enable_auto_restart is 'on'; allowed: true or false" },
        { "process_manager:max_restart_attempts", "1001", "process_manager.max_restart_attempts is 1001; allowed: 0 to 1000" },
        { "process_manager:restart_backoff_seconds", "-0.5", "process_manager.restart_backoff_seconds is -0.5; allowed: 0 to 3600 seconds" },
        { "process_manager:restart_window_seconds", "0.5", "process_manager.restart_window_seconds is 0.5; allowed: 1 to 604800 seconds" },
        { "process_manager:restart_window_seconds", "long", "process_manager.restart_window_seconds is 'long'; allowed: a number (fractions allowed, e.g. 0.5)" },
        { "ipc:socket_path", "/" + new string('i', 120), $"ipc.socket_path is '/{new string('i', 120)}'; a Unix socket path must be at most 107 bytes" },
        { "ipc:max_connections", "0", "ipc.max_connections is 0; allowed: 1 to 10000" },
        { "ipc:idle_timeout_seconds", "86401", "ipc.idle_timeout_seconds is 86401; allowed: 0 (off) or 0.01 to 86400 seconds" },
        { "orleans:dashboard_port", "0", "orleans.dashboard_port is 0; allowed: 1 to 65535" },
        { "orleans:dashboard", "sometimes", "orleans.dashboard is 'sometimes'; allowed: true or false" },
        { "logging:level", "loud", "logging.level is 'loud'; allowed: verbose, debug, information, warning, error, fatal" },
        { "logging:format", "xml", "logging.format is 'xml'; allowed: console, json" },
        { "health:max_error_rate_per_second", "-1", "health.max_error_rate_per_second is -1; allowed: 0 to 1000000 (errors per second)" },
        { "health:error_rate_window_seconds", "0", "health.error_rate_window_seconds is 0; allowed: 1 to 86400" },
        { "health:probe_timeout_seconds", "301", "health.probe_timeout_seconds is 301; allowed: 0.01 to 300" },
        { "health:buffer_degraded_percent", "0", "health.buffer_degraded_percent is 0; allowed: 1 to 100" },
        { "collectors:0:id", "Bad.Id", "collectors[0].id is 'Bad.Id'; allowed: 1 to 64 characters from a-z, 0-9, '_' and '-'" },
        { "collectors:0:enabled", "si", "collectors[0].enabled is 'si'; allowed: true or false" },
    };

    [Theory]
    [MemberData(nameof(BadValues))]
    public void Each_bad_value_gets_a_message_naming_the_key_the_value_and_what_is_allowed(string key, string value, string message)
    {
        var values = new Dictionary<string, string?> { [key] = value };
        if (key.StartsWith("collectors:0:", StringComparison.Ordinal))
        {
            values.TryAdd("collectors:0:id", "ok");
            values["collectors:0:executable"] = "/bin/true";
        }

        var report = ConfigurationValidator.Validate(Build(values));

        Assert.Equal([message], report.Errors);
        Assert.False(report.IsValid);
    }

    [Fact]
    public void Every_problem_is_reported_at_once_including_the_rest_of_a_section_with_an_unconvertible_value()
    {
        var report = ConfigurationValidator.Validate(Build(new()
        {
            ["broker:message_buffer_size"] = "lots",
            ["broker:max_subscribers"] = "0",
            ["rpc:default_timeout_seconds"] = "0",
            ["collectors:0:id"] = "a",
            ["collectors:0:executable"] = "x",
            ["collectors:1:id"] = "a",
            ["collectors:1:executable"] = "",
        }));

        Assert.Equal(
            [
                "broker.message_buffer_size is 'lots'; allowed: a whole number",
                "broker.max_subscribers is 0; allowed: 1 to 1000000",
                "rpc.default_timeout_seconds is 0; allowed: 1 to 3600",
                "collectors[1].executable is empty; give the program to run",
                "collectors[1].id 'a' is used twice; collector ids must be unique",
            ],
            report.Errors);
    }

    [Fact]
    public void The_shipped_configuration_file_is_valid_and_has_no_unknown_keys()
    {
        var file = Path.Combine(RepositoryRoot(), "config", "daemoneye.yaml");
        var report = ConfigurationValidator.Validate(new ConfigurationBuilder().AddYamlFile(file).Build());

        Assert.Empty(report.Errors);
        Assert.Empty(report.Warnings);
    }

    [Fact]
    public void Every_key_of_the_shipped_file_is_a_known_key_and_every_known_key_is_in_the_shipped_file()
    {
        var file = Path.Combine(RepositoryRoot(), "config", "daemoneye.yaml");
        var configuration = new ConfigurationBuilder().AddYamlFile(file).Build();
        Assert.Empty(ConfigurationValidator.Validate(configuration).Warnings);

        // Read the text, not the bound configuration: an empty list ("allowed_uids: []") binds to no key at all.
        var lines = File.ReadAllLines(file);
        foreach (var section in ConfigurationValidator.Sections.Where(s => !s.IsList))
        {
            var start = Array.FindIndex(lines, l => l == section.Name + ":");
            Assert.True(start >= 0, $"section {section.Name} is not in config/daemoneye.yaml");
            var body = lines.Skip(start + 1).TakeWhile(l => l.Length == 0 || l[0] == ' ' || l[0] == '#').ToList();
            foreach (var key in section.Keys)
            {
                Assert.True(body.Any(l => l.StartsWith($"  {key}:", StringComparison.Ordinal)), $"{section.Name}.{key} is not in config/daemoneye.yaml");
            }
        }
    }

    [Fact]
    public void Unknown_keys_in_key_order_are_warnings_naming_the_source_the_closest_known_key_and_the_known_keys()
    {
        var directory = Directory.CreateTempSubdirectory("de-cfg-").FullName;
        try
        {
            var file = Path.Combine(directory, "agent.yaml");
            File.WriteAllText(file, """
                broker:
                  max_subscriber: 5
                collectors:
                  - id: x
                    executable: /bin/true
                    enabld: false
                brokr:
                  a: 1
                zzz: 1
                """);
            var report = ConfigurationValidator.Validate(new ConfigurationBuilder().AddYamlFile(file).Build());

            Assert.Empty(report.Errors);
            Assert.Equal(
                [
                    $"unknown key broker.max_subscriber (file {file}:2) is ignored; did you mean 'max_subscribers'? Known keys of broker: {string.Join(", ", ConfigurationValidator.Sections.Single(s => s.Name == "broker").Keys)}",
                    $"unknown key brokr (file {file}:8) is ignored; did you mean 'broker'? Known keys of the top level: {string.Join(", ", ConfigurationValidator.Sections.Select(s => s.Name))}",
                    $"unknown key collectors[0].enabld (file {file}:6) is ignored; did you mean 'enabled'? Known keys of each collectors entry: {string.Join(", ", ConfigurationValidator.Sections.Single(s => s.Name == "collectors").Keys)}",
                    $"unknown key zzz (file {file}:9) is ignored. Known keys of the top level: {string.Join(", ", ConfigurationValidator.Sections.Select(s => s.Name))}",
                ],
                report.Warnings);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public void Environment_variables_override_the_file_and_are_named_as_the_source()
    {
        const string Variable = "DAEMONEYE_RPC__MAX_PENDING_REQUESTS";
        var directory = Directory.CreateTempSubdirectory("de-cfg-").FullName;
        Environment.SetEnvironmentVariable(Variable, "7");
        try
        {
            var file = Path.Combine(directory, "agent.yaml");
            File.WriteAllText(file, "rpc:\n  max_pending_requests: 5\n  default_timeout_seconds: 9\n");
            var configuration = new ConfigurationBuilder().AddDaemonEyeConfiguration(file).Build();

            var values = EffectiveConfiguration.Describe(configuration).Where(v => v.Section == "rpc").ToDictionary(v => v.Key);

            Assert.Equal(7, values["max_pending_requests"].Value);
            Assert.Equal("environment " + Variable, values["max_pending_requests"].Source);
            Assert.Equal(9, values["default_timeout_seconds"].Value);
            Assert.Equal("file " + file + ":3", values["default_timeout_seconds"].Source);
            Assert.Equal(60, values["health_check_interval_seconds"].Value);
            Assert.Equal("default", values["health_check_interval_seconds"].Source);
        }
        finally
        {
            Environment.SetEnvironmentVariable(Variable, null);
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public void Config_show_names_registration_token_ids_but_never_prints_the_tokens()
    {
        var configuration = Build(new() { ["security:registration_tokens:procmond"] = "0123456789abcdef0123" });

        var tokens = EffectiveConfiguration.Describe(configuration).Single(v => v.Section == "security" && v.Key == "registration_tokens");

        var formatted = EffectiveConfiguration.Format(tokens.Value);
        Assert.Equal("{procmond: \"<redacted>\"}", formatted);
        Assert.DoesNotContain("0123456789abcdef0123", formatted, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("max_subscriber", "max_subscribers")]
    [InlineData("default_timeout", "default_timeout_seconds")]
    [InlineData("SOCKET_PATH", "socket_path")]
    [InlineData("nothing_like_it", null)]
    public void The_closest_known_key_is_suggested_only_when_it_is_near(string typo, string? expected) =>
        Assert.Equal(expected, ConfigurationValidator.Closest(typo, new BrokerOptions().GetType().GetProperties()
            .Select(p => p.GetCustomAttributes(typeof(ConfigurationKeyNameAttribute), false).OfType<ConfigurationKeyNameAttribute>().FirstOrDefault()?.Name)
            .OfType<string>()
            .Append("default_timeout_seconds")));

    private static IConfiguration Build(Dictionary<string, string?> values) =>
        new ConfigurationBuilder().AddInMemoryCollection(values).Build();

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "DaemonEye.Orleans.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("no DaemonEye.Orleans.sln above the test");
    }
}
