using System.CommandLine;
using System.Text.Json;
using DaemonEye.Configuration;
using Microsoft.Extensions.Configuration;

namespace DaemonEye.Cli.Commands;

/// <summary>
/// <c>config validate [FILE]</c> and <c>config show [--json]</c>: the agent's configuration, offline,
/// loaded and validated by the same code the agent runs at start-up (defaults, then the file, then
/// DAEMONEYE_&lt;SECTION&gt;__&lt;KEY&gt; environment variables).
/// </summary>
internal static class ConfigCommands
{
    public static Command Build(CliContext context)
    {
        var config = new Command("config", "Validate or show the agent's configuration (no agent needed)");
        config.Subcommands.Add(BuildValidate(context));
        config.Subcommands.Add(BuildShow(context));
        return config;
    }

    private static Command BuildValidate(CliContext context)
    {
        var file = new Argument<string?>("file")
        {
            Description = "The YAML file to check (default: --config, else config/daemoneye.yaml if present, else the embedded defaults)",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var command = new Command("validate", "Run every check of the agent's start-up (values, socket directories, collector executables, detection rules): exit 0 when valid (warnings for unknown keys and rule files that do not load), 2 listing every problem with its key, value, what is allowed and where it came from");
        command.Arguments.Add(file);
        command.SetAction(parse =>
        {
            var path = parse.GetValue(file) ?? parse.GetValue(context.Config);
            if (!TryLoad(context, path, out var configuration, out var origin))
            {
                return CliApplication.Invalid;
            }

            var report = StartupChecks.Run(configuration, AgentLocation.CheckContext());
            foreach (var warning in report.Warnings.Concat(report.Rules))
            {
                context.Error.WriteLine($"warning: {warning}");
            }

            foreach (var error in report.Errors)
            {
                context.Error.WriteLine($"error: {error}");
            }

            var warningCount = report.Warnings.Count + report.Rules.Count;
            var warnings = warningCount == 0 ? string.Empty : $", {warningCount} warning(s)";
            if (!report.IsValid)
            {
                context.Output.WriteLine($"{origin}: invalid, {report.Errors.Count} problem(s){warnings}");
                return CliApplication.Invalid;
            }

            context.Output.WriteLine($"{origin}: valid{warnings}");
            return CliApplication.Ok;
        });
        return command;
    }

    private static Command BuildShow(CliContext context)
    {
        var json = new Option<bool>("--json") { Description = "One JSON object: section -> key -> {value, source}" };
        var command = new Command("show", "Print the effective configuration (defaults + file + environment) and where each value came from");
        command.Options.Add(json);
        command.SetAction(parse =>
        {
            if (!TryLoad(context, parse.GetValue(context.Config), out var configuration, out var origin))
            {
                return CliApplication.Invalid;
            }

            var values = EffectiveConfiguration.Describe(configuration);
            var report = StartupChecks.Run(configuration, AgentLocation.CheckContext());
            if (parse.GetValue(json))
            {
                WriteJson(context.Output, origin, values, report);
            }
            else
            {
                WriteText(context.Output, origin, values, report);
            }

            return report.IsValid ? CliApplication.Ok : CliApplication.Invalid;
        });
        return command;
    }

    private static bool TryLoad(CliContext context, string? path, out IConfiguration configuration, out string origin)
    {
        configuration = null!;
        origin = path is not null ? Path.GetFullPath(path)
            : File.Exists(ConfigurationLoader.DefaultPath) ? Path.GetFullPath(ConfigurationLoader.DefaultPath)
            : "embedded defaults (no configuration file)";
        try
        {
            configuration = new ConfigurationBuilder().AddDaemonEyeConfiguration(path).Build();
            return true;
        }
        catch (Exception e) when (ConfigurationLoader.DescribeLoadFailure(e, path) is { } failure)
        {
            context.Error.WriteLine($"error: {failure}");
        }

        return false;
    }

    private static void WriteText(TextWriter output, string origin, IReadOnlyList<EffectiveValue> values, ConfigurationReport report)
    {
        output.WriteLine($"# effective configuration: embedded defaults < {origin} < environment (DAEMONEYE_<SECTION>__<KEY>)");
        string? section = null;
        foreach (var value in values)
        {
            if (value.Section != section)
            {
                section = value.Section;
                output.WriteLine($"{section}:");
            }

            var line = $"  {value.Key}: {EffectiveConfiguration.Format(value.Value)}";
            output.WriteLine($"{line.PadRight(52)} # {value.Source}");
        }

        if (!values.Any(v => v.Section.StartsWith(CollectorDefinition.SectionName, StringComparison.Ordinal)))
        {
            output.WriteLine($"{CollectorDefinition.SectionName}: []");
        }

        foreach (var warning in report.Warnings)
        {
            output.WriteLine($"# warning: {warning}");
        }

        foreach (var error in report.Errors)
        {
            output.WriteLine($"# error: {error}");
        }
    }

    private static void WriteJson(TextWriter output, string origin, IReadOnlyList<EffectiveValue> values, ConfigurationReport report)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("file", origin);
            w.WriteStartObject("values");
            foreach (var group in values.GroupBy(v => v.Section))
            {
                w.WriteStartObject(group.Key);
                foreach (var value in group)
                {
                    w.WriteStartObject(value.Key);
                    w.WritePropertyName("value");
                    JsonSerializer.Serialize(w, value.Value, value.Value?.GetType() ?? typeof(string));
                    w.WriteString("source", value.Source);
                    w.WriteEndObject();
                }

                w.WriteEndObject();
            }

            w.WriteEndObject();
            w.WriteStartArray("warnings");
            report.Warnings.ToList().ForEach(w.WriteStringValue);
            w.WriteEndArray();
            w.WriteStartArray("errors");
            report.Errors.ToList().ForEach(w.WriteStringValue);
            w.WriteEndArray();
            w.WriteEndObject();
        }

        output.WriteLine(System.Text.Encoding.UTF8.GetString(stream.ToArray()));
    }
}
