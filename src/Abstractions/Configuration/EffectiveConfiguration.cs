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

    /// <summary>
    /// Every key with its value and source. Never throws on a value of the wrong type (from the file
    /// or the environment): such a value is shown as written, its source marked <c>invalid</c>, and
    /// the rest of its section still binds.
    /// </summary>
    public static IReadOnlyList<EffectiveValue> Describe(IConfiguration configuration)
    {
        var bad = ConfigurationValidator.Unconvertible(configuration);
        var usable = ConfigurationValidator.WithoutUnconvertible(configuration);
        var values = new List<EffectiveValue>();
        foreach (var section in ConfigurationValidator.Sections)
        {
            if (section.IsList)
            {
                var entries = usable.GetSection(section.Name).GetChildren().ToList();
                for (var i = 0; i < entries.Count; i++)
                {
                    var entry = Activator.CreateInstance(section.OptionsType)!;
                    if (TryBind(entries[i], entry))
                    {
                        values.AddRange(Values(configuration, bad, entry, $"{section.Name}[{i}]", entries[i].Path));
                    }
                    else
                    {
                        values.AddRange(Raw(configuration, section.OptionsType, $"{section.Name}[{i}]", entries[i].Path));
                    }
                }

                continue;
            }

            var options = Activator.CreateInstance(section.OptionsType)!;
            values.AddRange(TryBind(usable.GetSection(section.Name), options)
                ? Values(configuration, bad, options, section.Name, section.Name)
                : Raw(configuration, section.OptionsType, section.Name, section.Name));
        }

        return values;
    }

    private static bool TryBind(IConfigurationSection section, object options)
    {
        try
        {
            section.Bind(options);
            return true;
        }
        catch (InvalidOperationException)
        {
            return false; // A list or map element of the wrong type: the validator names it.
        }
    }

    /// <summary>A section that does not bind: each key as written, marked invalid where it is set.</summary>
    private static IEnumerable<EffectiveValue> Raw(IConfiguration configuration, Type optionsType, string section, string path)
    {
        foreach (var key in ConfigurationValidator.KeysOf(optionsType))
        {
            var keyPath = path + ":" + key;
            var node = configuration.GetSection(keyPath);
            object? value = node.Value is { } text ? text : node.GetChildren().Any() ? node.GetChildren().Select(c => c.Value).ToList() : null;
            var source = ConfigurationValidator.SourceOf(configuration, node.Value is null && node.GetChildren().FirstOrDefault() is { } child ? child.Path : keyPath);
            yield return new EffectiveValue(section, key, value, value is null ? "default (this section has an invalid value)" : source + "; section invalid, see the errors");
        }
    }

    private static IEnumerable<EffectiveValue> Values(IConfiguration configuration, HashSet<string> bad, object options, string section, string path)
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
                foreach (var inner in Values(configuration, bad, nested, section + "." + key, keyPath))
                {
                    yield return inner;
                }

                continue;
            }

            if (bad.Contains(keyPath))
            {
                // Shown as written; the agent would refuse it (the errors below say what is allowed).
                yield return new EffectiveValue(section, key, configuration[keyPath], ConfigurationValidator.SourceOf(configuration, keyPath) + "; invalid");
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
