using System.Text.Json;
using Json.Schema;

namespace DaemonEye.Client.Tests;

/// <summary>Checks JSON against the CLI's schemas (docs/schemas, copied beside the tests as Schemas/).</summary>
internal static class SchemaAssert
{
    // A schema registers its $id once per process: each is compiled once.
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, Lazy<JsonSchema>> Compiled = new(StringComparer.Ordinal);

    public static void Valid(string schema, string json)
    {
        var compiled = Compiled.GetOrAdd(schema, name => new Lazy<JsonSchema>(() =>
            JsonSchema.FromText(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Schemas", $"{name}.schema.json"))))).Value;
        using var document = JsonDocument.Parse(json);
        var result = compiled.Evaluate(document.RootElement, new EvaluationOptions { OutputFormat = OutputFormat.List });
        Assert.True(result.IsValid, $"{schema}: {string.Join("; ", (result.Details ?? []).Where(d => d.Errors is { Count: > 0 }).SelectMany(d => d.Errors!.Select(e => $"{d.InstanceLocation}: {e.Value}")))}\n{json}");
        NumbersAreNumbers(json);
    }

    // Names that denote a count, a size, an id number or a time in units: their values are numbers.
    private static readonly System.Text.RegularExpressions.Regex NumericName = new(
        "(^|_)(ms|us|ns|nanos|seconds|bytes|sequence|count|pid|ppid|uid|euid|gid|port|inode|cookie|size|restarts|rss|threads|total|dropped|delivered|published|unrouted|requests|responses|errors|lag)$",
        System.Text.RegularExpressions.RegexOptions.CultureInvariant);

    private static readonly HashSet<string> TextMaps = new(["settings", "details", "parameters", "tags", "versions"], StringComparer.Ordinal);

    /// <summary>
    /// The CLI's JSON rule (docs/operator.md, "JSON types"): integers, 64-bit ones included, are JSON
    /// numbers everywhere. Every property whose name denotes a number (<c>*_unix_ms</c>, <c>pid</c>,
    /// <c>*_bytes</c>, <c>sequence</c>...) anywhere in the document, decoded events and task payloads
    /// included (which the schemas leave open), must not be a string. Not checked: the keys of the
    /// string maps of the protocol (a collector's <c>settings</c> and <c>versions</c>, health <c>details</c>, task
    /// <c>parameters</c>, correlation <c>tags</c>), whose values are text by contract.
    /// </summary>
    public static void NumbersAreNumbers(string json)
    {
        using var document = JsonDocument.Parse(json);
        Walk(document.RootElement, "$", textMap: false);

        void Walk(JsonElement element, string path, bool textMap)
        {
            switch (element.ValueKind)
            {
                case JsonValueKind.Object:
                    foreach (var property in element.EnumerateObject())
                    {
                        var at = $"{path}.{property.Name}";
                        Assert.False(
                            !textMap && property.Value.ValueKind == JsonValueKind.String && NumericName.IsMatch(property.Name),
                            $"{at} is the string {property.Value.GetRawText()}; a number is expected\n{json}");
                        Walk(property.Value, at, TextMaps.Contains(property.Name));
                    }

                    break;
                case JsonValueKind.Array:
                    var i = 0;
                    foreach (var item in element.EnumerateArray())
                    {
                        Walk(item, $"{path}[{i++}]", textMap: false);
                    }

                    break;
            }
        }
    }
}
