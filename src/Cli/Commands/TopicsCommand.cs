using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using DaemonEye.Cli.Output;
using DaemonEye.Protocol.Ipc.V1;
using Spectre.Console;

namespace DaemonEye.Cli.Commands;

/// <summary>
/// <c>topics</c>: the bus's traffic by topic root (the first segment: events, control), messages
/// published and delivered since the agent started, from its metrics (<c>daemoneye.bus.published</c>
/// and <c>.delivered</c> by <c>topic.root</c>). The agent counts by root, not by topic.
/// </summary>
internal static class TopicsCommand
{
    public static Command Build(CliContext context)
    {
        var command = new Command("topics", "Messages published and delivered per topic root since the agent started");
        var output = OutputOptions.AddTo(command, "an array of {root, published, delivered}");
        var watch = WatchOptions.AddTo(command);
        command.SetAction((parse, cancellationToken) => AgentConnection.RunAsync(context, () =>
            CollectorCommands.RunViewAsync(context, parse, output, watch, "topics", new IpcRequest { Metrics = new MetricsRequest() }, (response, format) =>
            {
                var rows = Rows(response.Metrics);
                if (format == OutputFormat.Json)
                {
                    return CollectorCommands.Json(w => Write(w, rows));
                }

                var table = Styles.Table(context.Console, "TOPIC ROOT", "PUBLISHED>", "DELIVERED>");
                foreach (var (root, published, delivered) in rows)
                {
                    table.AddRow(Styles.Text(root), Styles.Text(published.ToString(CultureInfo.InvariantCulture)), Styles.Text(delivered.ToString(CultureInfo.InvariantCulture)));
                }

                return table;
            }, null, null, cancellationToken)));
        return command;
    }

    internal static List<(string Root, ulong Published, ulong Delivered)> Rows(MetricsResponse metrics)
    {
        Dictionary<string, double> ByRoot(string name) => metrics.Metrics.FirstOrDefault(m => m.Name == name)?.Points
            .GroupBy(p => p.Tags.TryGetValue("topic.root", out var root) ? root : "(none)")
            .ToDictionary(g => g.Key, g => g.Sum(p => p.Value)) ?? [];
        var published = ByRoot("daemoneye.bus.published");
        var delivered = ByRoot("daemoneye.bus.delivered");
        return published.Keys.Union(delivered.Keys).Order(StringComparer.Ordinal)
            .Select(root => (root, (ulong)published.GetValueOrDefault(root), (ulong)delivered.GetValueOrDefault(root)))
            .ToList();
    }

    private static void Write(Utf8JsonWriter w, List<(string Root, ulong Published, ulong Delivered)> rows)
    {
        w.WriteStartArray();
        foreach (var (root, published, delivered) in rows)
        {
            w.WriteStartObject();
            w.WriteString("root", root);
            w.WriteNumber("published", published);
            w.WriteNumber("delivered", delivered);
            w.WriteEndObject();
        }

        w.WriteEndArray();
    }
}
