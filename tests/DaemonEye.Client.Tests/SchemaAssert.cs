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
    }
}
