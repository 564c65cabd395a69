using System.Collections;
using System.Globalization;
using System.Reflection;
using Microsoft.Extensions.Configuration;

namespace DaemonEye.Configuration;

/// <summary>One key of the effective configuration: its value after defaults, file and environment, and where that came from.</summary>
/// <param name="Section">The section (<c>broker</c>), or <c>collectors[0]</c> for a list entry.</param>
/// <param name="Key">The key within the section (<c>socket_path</c>).</param>
/// <param name="Value">The value the agent uses, as a .NET value (string, number, bool, list, map).</param>
/// <param name="Source"><c>default</c>, <c>file PATH</c>, <c>environment DAEMONEYE_…</c> or <c>command line</c>.</param>
public sealed record EffectiveValue(string Section, string Key, object? Value, string Source);

/// <summary>Marks a key whose values are secrets: <c>config show</c> prints its map keys but not their values.</summary>
[AttributeUsage(AttributeTargets.Property)]
public sealed class SecretAttribute : Attribute;

/// <summary>The configuration the agent would run with: every known key, its value and its source.</summary>
public static class EffectiveConfiguration
{
    /// <summary>What <c>config show</c> prints instead of a secret value.</summary>
    public const string Redacted = "<redacted>";

    public static IReadOnlyList<EffectiveValue> Describe(IConfiguration configuration)
    {
        var values = new List<EffectiveValue>();
        foreach (var section in ConfigurationValidator.Sections)
        {
            if (section.IsList)
            {
                var entries = configuration.GetSection(section.Name).GetChildren().ToList();
                for (var i = 0; i < entries.Count; i++)
                {
                    var entry = Activator.CreateInstance(section.OptionsType)!;
                    entries[i].Bind(entry);
                    values.AddRange(Values(configuration, entry, $"{section.Name}[{i}]", entries[i].Path));
                }

                continue;
            }

            var options = Activator.CreateInstance(section.OptionsType)!;
            configuration.GetSection(section.Name).Bind(options);
            values.AddRange(Values(configuration, options, section.Name, section.Name));
        }

        return values;
    }

    private static IEnumerable<EffectiveValue> Values(IConfiguration configuration, object options, string section, string path)
    {
        foreach (var property in options.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (property.GetCustomAttribute<ConfigurationKeyNameAttribute>()?.Name is not { } key)
            {
                continue;
            }

            var keyPath = path + ":" + key;
            if (ConfigurationValidator.IsNestedOptions(property.PropertyType) && property.GetValue(options) is { } nested)
            {
                // A nested section (coordination.rules): its keys, each with its own source.
                foreach (var inner in Values(configuration, nested, section + "." + key, keyPath))
                {
                    yield return inner;
                }

                continue;
            }

            var source = ConfigurationValidator.SourceOf(configuration, keyPath);
            if (source == "default" && configuration.GetSection(keyPath).GetChildren().FirstOrDefault() is { } child)
            {
                // A list or map: report where its first element came from.
                source = ConfigurationValidator.SourceOf(configuration, child.GetChildren().Any() ? child.GetChildren().First().Path : child.Path);
            }

            var value = property.GetValue(options);
            if (property.GetCustomAttribute<SecretAttribute>() is not null)
            {
                value = value is IDictionary map
                    ? map.Keys.Cast<object>().ToDictionary(k => k, _ => (object?)Redacted)
                    : value is null or "" ? value : Redacted;
            }

            yield return new EffectiveValue(section, key, value, source);
        }
    }

    /// <summary>A value as YAML would write it: strings quoted, lists in brackets, maps in braces.</summary>
    public static string Format(object? value) => value switch
    {
        null => "\"\"",
        string s => "\"" + s.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal) + "\"",
        bool b => b ? "true" : "false",
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        IDictionary d => "{" + string.Join(", ", d.Keys.Cast<object>().Order().Select(k => $"{k}: {Format(d[k])}")) + "}",
        IEnumerable e => "[" + string.Join(", ", e.Cast<object?>().Select(Format)) + "]",
        _ => value.ToString() ?? string.Empty,
    };
}
