using System.Globalization;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Configuration.EnvironmentVariables;

namespace DaemonEye.Configuration;

/// <summary>One section of the configuration: its name, its options class and how to validate it.</summary>
/// <param name="Name">The YAML section name (<c>broker</c>).</param>
/// <param name="OptionsType">The options class; its <see cref="ConfigurationKeyNameAttribute"/> properties are the section's keys.</param>
/// <param name="Validate">Every problem with the section, each naming the key, the value and what is allowed.</param>
/// <param name="IsList">The section is a list of <paramref name="OptionsType"/> entries (<c>collectors</c>).</param>
public sealed record KnownSection(string Name, Type OptionsType, Func<IConfiguration, IEnumerable<string>> Validate, bool IsList = false)
{
    /// <summary>The section's keys in declaration order.</summary>
    public IReadOnlyList<string> Keys { get; } = ConfigurationValidator.KeysOf(OptionsType);
}

/// <summary>The outcome of validating a configuration: errors stop the agent (exit 2); warnings do not.</summary>
/// <param name="Errors">Problems that stop the agent, each naming the key, the value, what is allowed and where the value came from.</param>
/// <param name="Warnings">Unknown keys and the like: logged at start-up, ignored.</param>
/// <param name="RuleProblems">Detection rule files that do not load (file:line): the agent logs them and runs the other rules.</param>
public sealed record ConfigurationReport(IReadOnlyList<string> Errors, IReadOnlyList<string> Warnings, IReadOnlyList<string>? RuleProblems = null)
{
    public bool IsValid => Errors.Count == 0;

    /// <summary>Detection rule files that do not load; empty when the rules were not checked.</summary>
    public IReadOnlyList<string> Rules => RuleProblems ?? [];
}

/// <summary>
/// The one validation of the agent's configuration, run by the agent at start-up and by
/// <c>daemoneye-cli config validate</c>: every bad value (naming the key, the value and what is
/// allowed) as an error; every key no section knows as a warning naming where it came from (file or
/// environment variable), the closest known key, and the section's known keys.
/// </summary>
public static partial class ConfigurationValidator
{
    private static readonly ConditionalWeakTable<FileConfigurationProvider, IReadOnlyDictionary<string, int>> KeyLines = [];

    /// <summary>Keys whose children are free-form (a collector's <c>environment</c> and <c>arguments</c>; the security section's lists and token map).</summary>
    private static readonly HashSet<string> FreeFormKeys = new(StringComparer.OrdinalIgnoreCase) { "environment", "arguments", "allowed_uids", "allowed_gids", "registration_tokens", "collector_callers", "watch_lists", "topics", "users" };

    /// <summary>Every section the agent reads. A new section is one line here.</summary>
    public static IReadOnlyList<KnownSection> Sections { get; } =
    [
        new(BrokerOptions.SectionName, typeof(BrokerOptions), c => Bind<BrokerOptions>(c, BrokerOptions.SectionName).Validate()),
        new(RpcOptions.SectionName, typeof(RpcOptions), c => Bind<RpcOptions>(c, RpcOptions.SectionName).Validate()),
        new(ProcessManagerOptions.SectionName, typeof(ProcessManagerOptions), c => Bind<ProcessManagerOptions>(c, ProcessManagerOptions.SectionName).Validate()),
        new(IpcOptions.SectionName, typeof(IpcOptions), c => Bind<IpcOptions>(c, IpcOptions.SectionName).Validate()),
        new(CollectorDefinition.SectionName, typeof(CollectorDefinition), ValidateCollectors, IsList: true),
        new(OrleansOptions.SectionName, typeof(OrleansOptions), c => Bind<OrleansOptions>(c, OrleansOptions.SectionName).Validate()),
        new(LoggingOptions.SectionName, typeof(LoggingOptions), c => Bind<LoggingOptions>(c, LoggingOptions.SectionName).Validate()),
        new(HealthOptions.SectionName, typeof(HealthOptions), c => Bind<HealthOptions>(c, HealthOptions.SectionName).Validate()),
        new(SecurityOptions.SectionName, typeof(SecurityOptions), c => Bind<SecurityOptions>(c, SecurityOptions.SectionName).Validate()),
        new(DurabilityOptions.SectionName, typeof(DurabilityOptions), c => Bind<DurabilityOptions>(c, DurabilityOptions.SectionName).Validate()),
        new(MqttOptions.SectionName, typeof(MqttOptions), c => Bind<MqttOptions>(c, MqttOptions.SectionName).Validate()),
        new(Coordination.CoordinationOptions.SectionName, typeof(Coordination.CoordinationOptions), c => Bind<Coordination.CoordinationOptions>(c, Coordination.CoordinationOptions.SectionName).Validate()),
    ];

    /// <summary>Validates <paramref name="configuration"/>: all errors and all unknown-key warnings at once.</summary>
    public static ConfigurationReport Validate(IConfiguration configuration)
    {
        // Values the binder cannot convert ("abc" for a number) are reported one by one and left out, so
        // the remaining keys of the same section are still checked.
        var errors = new List<string>();
        var unconvertible = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var (path, type) in TypedKeys(configuration))
        {
            try
            {
                configuration.GetValue(type, path);
            }
            catch (InvalidOperationException)
            {
                unconvertible.Add(path);
                errors.Add($"{DottedKey(path)} is '{configuration[path]}'; allowed: {Describe(type.FullName ?? type.Name)}");
            }
        }

        var usable = unconvertible.Count == 0
            ? configuration
            : new ConfigurationBuilder().AddInMemoryCollection(configuration.AsEnumerable().Where(kv => !unconvertible.Contains(kv.Key))).Build();
        foreach (var section in Sections)
        {
            try
            {
                errors.AddRange(section.Validate(usable));
            }
            catch (InvalidOperationException ex)
            {
                // The binder could not convert a value ("abc" for a number); its message names the key and the value.
                errors.Add(DescribeBinderFailure(section, ex));
            }
        }

        return new ConfigurationReport([.. errors.Select(e => WithSource(configuration, e))], UnknownKeys(configuration));
    }

    /// <summary><paramref name="configuration"/> without the values the binder cannot convert ("abc" for a number), so the rest binds.</summary>
    public static IConfiguration WithoutUnconvertible(IConfiguration configuration) =>
        Unconvertible(configuration) is { Count: > 0 } bad
            ? new ConfigurationBuilder().AddInMemoryCollection(configuration.AsEnumerable().Where(kv => !bad.Contains(kv.Key))).Build()
            : configuration;

    /// <summary>The keys (configuration paths) whose values the binder cannot convert to their property's type.</summary>
    public static HashSet<string> Unconvertible(IConfiguration configuration)
    {
        var bad = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var (path, type) in TypedKeys(configuration))
        {
            try
            {
                configuration.GetValue(type, path);
            }
            catch (InvalidOperationException)
            {
                bad.Add(path);
            }
        }

        return bad;
    }

    /// <summary>
    /// <paramref name="message"/> (which starts with the dotted key it is about) with where that key's
    /// value came from appended: <c>(file PATH:LINE)</c> or <c>(environment DAEMONEYE_…)</c>. A default
    /// value, or a message about no key, is left as it is.
    /// </summary>
    public static string WithSource(IConfiguration configuration, string message)
    {
        var match = LeadingKey().Match(message);
        if (!match.Success)
        {
            return message;
        }

        var path = match.Value.Replace("[", ":", StringComparison.Ordinal).Replace("]", string.Empty, StringComparison.Ordinal).Replace('.', ':');
        var source = SourceOf(configuration, path);
        if (source == "default" && configuration.GetSection(path).GetChildren().FirstOrDefault() is { } child)
        {
            source = SourceOf(configuration, FirstLeaf(child));
        }

        return source is "default" or "command line" ? message : $"{message} ({source})";
    }

    [GeneratedRegex(@"^[a-z_]+(\[\d+\])?(\.[a-z_]+)+", RegexOptions.CultureInvariant)]
    private static partial Regex LeadingKey();

    /// <summary>Every present scalar key of a known section with the type its property expects.</summary>
    private static IEnumerable<(string Path, Type Type)> TypedKeys(IConfiguration configuration)
    {
        foreach (var section in Sections)
        {
            var entries = section.IsList ? configuration.GetSection(section.Name).GetChildren() : [configuration.GetSection(section.Name)];
            foreach (var entry in entries)
            {
                foreach (var property in section.OptionsType.GetProperties(BindingFlags.Public | BindingFlags.Instance))
                {
                    if (property.GetCustomAttribute<ConfigurationKeyNameAttribute>()?.Name is { } key
                        && (property.PropertyType.IsPrimitive || property.PropertyType.IsEnum)
                        && entry.GetSection(key).Value is { Length: > 0 })
                    {
                        yield return (entry.Path + ":" + key, property.PropertyType);
                    }
                }
            }
        }
    }

    /// <summary>Reads a section into options, embedded defaults where keys are absent.</summary>
    public static T Bind<T>(IConfiguration configuration, string section) where T : new()
    {
        var options = new T();
        configuration.GetSection(section).Bind(options);
        return options;
    }

    /// <summary>The <c>collectors</c> list, bound.</summary>
    public static List<CollectorDefinition> BindCollectors(IConfiguration configuration)
    {
        var collectors = new List<CollectorDefinition>();
        configuration.GetSection(CollectorDefinition.SectionName).Bind(collectors);
        return collectors;
    }

    private static IEnumerable<string> ValidateCollectors(IConfiguration configuration)
    {
        var collectors = BindCollectors(configuration);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < collectors.Count; i++)
        {
            foreach (var error in collectors[i].Validate(i))
            {
                yield return error;
            }

            if (!seen.Add(collectors[i].Id))
            {
                yield return $"collectors[{i}].id '{collectors[i].Id}' is used twice; collector ids must be unique";
            }
        }
    }

    private static string DescribeBinderFailure(KnownSection section, InvalidOperationException ex)
    {
        // "Failed to convert configuration value 'abc' at 'broker:max_subscribers' to type 'System.Int32'."
        var message = ex.Message;
        var at = message.IndexOf(" at '", StringComparison.Ordinal);
        var to = message.IndexOf("' to type '", StringComparison.Ordinal);
        var value = message.IndexOf("value '", StringComparison.Ordinal);
        if (at > 0 && to > at && value >= 0 && value < at)
        {
            var key = message[(at + 5)..to];
            var text = message[(value + 7)..(at - 1)];
            var type = message[(to + 11)..].TrimEnd('.', '\'');
            return $"{DottedKey(key)} is '{text}'; allowed: {Describe(type)}";
        }

        return $"{section.Name}: {message}";
    }

    private static string Describe(string clrType) => clrType switch
    {
        "System.Int32" => "a whole number",
        "System.Int64" => "a whole number",
        "System.Double" => "a number (fractions allowed, e.g. 0.5)",
        "System.Boolean" => "true or false",
        _ => $"a value of type {clrType}",
    };

    /// <summary>broker:max_subscribers → broker.max_subscribers; collectors:0:id → collectors[0].id.</summary>
    public static string DottedKey(string configurationKey)
    {
        var parts = configurationKey.Split(':');
        var text = new System.Text.StringBuilder();
        foreach (var part in parts)
        {
            if (text.Length > 0 && int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out _))
            {
                text.Append('[').Append(part).Append(']');
            }
            else
            {
                if (text.Length > 0)
                {
                    text.Append('.');
                }

                text.Append(part.ToLowerInvariant());
            }
        }

        return text.ToString();
    }

    /// <summary>The configuration key names of an options class, in declaration order.</summary>
    internal static IReadOnlyList<string> KeysOf(Type optionsType) =>
    [
        .. optionsType.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Select(p => p.GetCustomAttribute<ConfigurationKeyNameAttribute>()?.Name)
            .OfType<string>(),
    ];

    /// <summary>Where a key's value came from: the environment variable, the file, or the embedded default.</summary>
    public static string SourceOf(IConfiguration configuration, string key)
    {
        if (configuration is IConfigurationRoot root)
        {
            foreach (var provider in root.Providers.Reverse())
            {
                if (provider.TryGet(key, out _))
                {
                    return Describe(provider, key);
                }
            }
        }

        return "default";
    }

    private static string Describe(IConfigurationProvider provider, string key) => provider switch
    {
        EnvironmentVariablesConfigurationProvider => "environment " + ConfigurationLoader.EnvironmentPrefix + key.Replace(":", "__", StringComparison.Ordinal).ToUpperInvariant(),
        FileConfigurationProvider file => "file " + (file.Source.FileProvider?.GetFileInfo(file.Source.Path ?? string.Empty).PhysicalPath ?? file.Source.Path) + LineOf(file, key),
        Microsoft.Extensions.Configuration.Memory.MemoryConfigurationProvider => "command line",
        _ => provider.ToString() ?? "configuration",
    };

    /// <summary>":LINE" of <paramref name="key"/> in the YAML file, or nothing when it cannot be told.</summary>
    private static string LineOf(FileConfigurationProvider file, string key)
    {
        var lines = KeyLines.GetValue(file, f => YamlKeyLines.Read(f.Source.FileProvider?.GetFileInfo(f.Source.Path ?? string.Empty).PhysicalPath));
        return lines.TryGetValue(key, out var line) ? ":" + line.ToString(CultureInfo.InvariantCulture) : string.Empty;
    }

    /// <summary>A warning for every key (file or environment) no section knows.</summary>
    private static List<string> UnknownKeys(IConfiguration configuration)
    {
        var warnings = new List<string>();
        var sections = Sections.ToDictionary(s => s.Name, StringComparer.OrdinalIgnoreCase);
        foreach (var child in configuration.GetChildren())
        {
            if (!sections.TryGetValue(child.Key, out var section))
            {
                warnings.Add(Unknown(configuration, child.Path, child.Key, Sections.Select(s => s.Name).ToList(), "the top level"));
                continue;
            }

            var entries = section.IsList ? child.GetChildren().SelectMany(entry => entry.GetChildren()) : child.GetChildren();
            CheckKeys(configuration, entries, section.OptionsType, section.IsList ? $"each {section.Name} entry" : section.Name, warnings);
        }

        return warnings;
    }

    /// <summary>Warns about each of <paramref name="keys"/> that <paramref name="optionsType"/> does not know; recurses into nested option classes (<c>coordination.rules</c>).</summary>
    private static void CheckKeys(IConfiguration configuration, IEnumerable<IConfigurationSection> keys, Type optionsType, string where, List<string> warnings)
    {
        var known = KeysOf(optionsType);
        foreach (var key in keys)
        {
            var property = optionsType.GetProperties(BindingFlags.Public | BindingFlags.Instance)
                .FirstOrDefault(p => string.Equals(p.GetCustomAttribute<ConfigurationKeyNameAttribute>()?.Name, key.Key, StringComparison.OrdinalIgnoreCase));
            if (property is null)
            {
                warnings.Add(Unknown(configuration, key.Path, key.Key, known, where));
            }
            else if (IsNestedOptions(property.PropertyType))
            {
                CheckKeys(configuration, key.GetChildren(), property.PropertyType, DottedKey(key.Path), warnings);
            }
            else if (!FreeFormKeys.Contains(key.Key) && key.GetChildren().Any())
            {
                warnings.Add($"{DottedKey(key.Path)} ({SourceOf(configuration, FirstLeaf(key))}) has nested keys but is a single value; they are ignored");
            }
        }
    }

    /// <summary>A property whose type is itself an options class with configuration keys.</summary>
    internal static bool IsNestedOptions(Type type) => type.IsClass && type != typeof(string) && KeysOf(type).Count > 0;

    private static string FirstLeaf(IConfigurationSection section)
    {
        var current = section;
        while (current.GetChildren().FirstOrDefault() is { } next)
        {
            current = next;
        }

        return current.Path;
    }

    private static string Unknown(IConfiguration configuration, string path, string key, IReadOnlyList<string> known, string where)
    {
        var source = SourceOf(configuration, configuration.GetSection(path).Value is null ? FirstLeaf(configuration.GetSection(path)) : path);
        var closest = Closest(key, known);
        var suggestion = closest is null ? "." : $"; did you mean '{closest}'?";
        return $"unknown key {DottedKey(path)} ({source}) is ignored{suggestion} Known keys of {where}: {string.Join(", ", known)}";
    }

    /// <summary>The known key nearest to <paramref name="key"/> by edit distance, if it is near enough to be a typo.</summary>
    public static string? Closest(string key, IEnumerable<string> known)
    {
        var lower = key.ToLowerInvariant();
        if (known.FirstOrDefault(k => lower.Length >= 3 && (k.StartsWith(lower, StringComparison.Ordinal) || lower.StartsWith(k, StringComparison.Ordinal))) is { } prefixed)
        {
            // default_timeout for default_timeout_seconds: a key with its unit (or more) left off.
            return prefixed;
        }

        var best = known.Select(k => (Key: k, Distance: Distance(lower, k))).OrderBy(x => x.Distance).FirstOrDefault();
        return best.Key is not null && best.Distance <= Math.Max(2, lower.Length / 3) ? best.Key : null;
    }

    private static int Distance(string a, string b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (var j = 0; j <= b.Length; j++)
        {
            previous[j] = j;
        }

        for (var i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (var j = 1; j <= b.Length; j++)
            {
                var cost = a[i - 1] == b[j - 1] ? 0 : 1;
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + cost);
            }

            (previous, current) = (current, previous);
        }

        return previous[b.Length];
    }
}
