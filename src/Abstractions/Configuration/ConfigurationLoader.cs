using Microsoft.Extensions.Configuration;

namespace DaemonEye.Configuration;

/// <summary>
/// Builds the agent's configuration the same way for the agent and the CLI: embedded defaults
/// (the option classes' initial values), then the YAML file, then environment variables named
/// <c>DAEMONEYE_&lt;SECTION&gt;__&lt;KEY&gt;</c> (for example <c>DAEMONEYE_BROKER__SOCKET_PATH</c>).
/// </summary>
public static class ConfigurationLoader
{
    public const string DefaultPath = "config/daemoneye.yaml";
    public const string EnvironmentPrefix = "DAEMONEYE_";

    /// <summary>
    /// Adds the YAML file and the environment to <paramref name="builder"/>. An explicitly named
    /// file must exist; the default file is optional (embedded defaults apply without it).
    /// </summary>
    public static IConfigurationBuilder AddDaemonEyeConfiguration(this IConfigurationBuilder builder, string? path)
    {
        if (path is not null)
        {
            var full = Path.GetFullPath(path);
            if (!File.Exists(full))
            {
                throw new FileNotFoundException($"configuration file '{full}' does not exist (given with --config)", full);
            }

            builder.AddYamlFile(full, optional: false, reloadOnChange: false);
        }
        else
        {
            builder.AddYamlFile(Path.GetFullPath(DefaultPath), optional: true, reloadOnChange: false);
        }

        builder.AddEnvironmentVariables(EnvironmentPrefix);
        return builder;
    }

    /// <summary>Reads the broker section into options (embedded defaults where keys are absent).</summary>
    public static BrokerOptions GetBrokerOptions(this IConfiguration configuration)
    {
        var options = new BrokerOptions();
        configuration.GetSection(BrokerOptions.SectionName).Bind(options);
        return options;
    }
}
