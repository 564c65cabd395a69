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

    /// <summary>
    /// The message for a configuration that cannot be loaded (a missing file, a file that is not YAML),
    /// or null for an exception that is not such a failure. A YAML error names the file, line and
    /// column: <c>/etc/daemoneye/daemoneye.yaml:7:3: not valid YAML: ...</c>.
    /// </summary>
    public static string? DescribeLoadFailure(Exception exception, string? path)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (e is YamlDotNet.Core.YamlException yaml)
            {
                var file = Path.GetFullPath(path ?? DefaultPath);
                return string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{file}:{yaml.Start.Line}:{yaml.Start.Column}: not valid YAML: {Innermost(yaml).Message.TrimEnd('.')}");
            }
        }

        return exception switch
        {
            FileNotFoundException => exception.Message,
            InvalidDataException or FormatException => DescribeYaml(Path.GetFullPath(path ?? DefaultPath))
                ?? $"{Path.GetFullPath(path ?? DefaultPath)}: cannot be read as configuration: {Innermost(exception).Message.TrimEnd('.')}",
            UnauthorizedAccessException or IOException => $"{Path.GetFullPath(path ?? DefaultPath)}: cannot be read: {exception.Message.TrimEnd('.')}",
            _ => null,
        };
    }

    private static Exception Innermost(YamlDotNet.Core.YamlException yaml) => yaml.InnerException is YamlDotNet.Core.YamlException inner ? Innermost(inner) : yaml;

    private static Exception Innermost(Exception exception) => exception.InnerException is { } inner ? Innermost(inner) : exception;

    /// <summary>The file's YAML error with its line and column (the configuration provider's own message has neither), or null.</summary>
    private static string? DescribeYaml(string file)
    {
        try
        {
            using var reader = File.OpenText(file);
            new YamlDotNet.RepresentationModel.YamlStream().Load(reader);
            return null;
        }
        catch (YamlDotNet.Core.YamlException yaml)
        {
            return string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{file}:{yaml.Start.Line}:{yaml.Start.Column}: not valid YAML: {Innermost(yaml).Message.TrimEnd('.')}");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
#pragma warning disable CA1031 // YamlDotNet's scanner throws a bare Exception on some input (an unclosed '['): find where.
        catch (Exception)
        {
            return WhereScannerStops(file);
        }
#pragma warning restore CA1031
    }

    /// <summary>Runs YamlDotNet's scanner alone over the file, to name the line and column where it gives up.</summary>
    private static string? WhereScannerStops(string file)
    {
        using var reader = File.OpenText(file);
        var scanner = new YamlDotNet.Core.Scanner(reader);
        var last = scanner.CurrentPosition;
        try
        {
            while (scanner.MoveNext())
            {
                last = scanner.Current?.Start ?? scanner.CurrentPosition;
            }

            return null;
        }
#pragma warning disable CA1031 // As above.
        catch (Exception ex)
        {
            var at = ex is YamlDotNet.Core.YamlException yaml ? yaml.Start : last;
            var what = ex is YamlDotNet.Core.YamlException ? ex.Message.TrimEnd('.') : "the YAML scanner stopped here (often a '[', '{' or quote that is not closed)";
            return string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{file}:{at.Line}:{at.Column}: not valid YAML: {what}");
        }
#pragma warning restore CA1031
    }

    /// <summary>Reads the broker section into options (embedded defaults where keys are absent).</summary>
    public static BrokerOptions GetBrokerOptions(this IConfiguration configuration)
    {
        var options = new BrokerOptions();
        configuration.GetSection(BrokerOptions.SectionName).Bind(options);
        return options;
    }
}
