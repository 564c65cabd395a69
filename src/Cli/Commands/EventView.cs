using System.Globalization;
using System.Text;
using System.Text.Json;
using DaemonEye.Client;
using Google.Protobuf;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace DaemonEye.Cli.Commands;

/// <summary>
/// <c>subscribe</c>'s multi-line form, for a terminal: a header (topic, sequence, time, correlation
/// id), then the decoded event's fields one per line, nested ones indented. Fields at their default
/// (empty, zero enum, empty list) are left out; <c>--json</c> has them all.
/// </summary>
internal static class EventView
{
    public static IRenderable Render(BusMessage message, IMessage? decoded, string? text, DateTimeOffset now)
    {
        var lines = new List<IRenderable>
        {
            new Markup($"[bold cyan]{Markup.Escape(message.Topic)}[/] [grey]#{message.Sequence} · {message.Timestamp.ToLocalTime():HH:mm:ss.fff} ({Output.Styles.Ago(now - message.Timestamp)}) · cid {Markup.Escape(message.CorrelationId)}[/]"),
        };
        if (decoded is not null)
        {
            lines.Add(new Markup($"  [bold]{Markup.Escape(decoded.Descriptor.Name)}[/]"));
            using var json = JsonDocument.Parse(EventDecoder.ToJson(decoded));
            foreach (var property in json.RootElement.EnumerateObject())
            {
                Add(lines, property.Name, property.Value, 1);
            }
        }
        else
        {
            lines.Add(new Markup($"  {Markup.Escape(text ?? "base64:" + Convert.ToBase64String(message.Payload.Span))}"));
        }

        lines.Add(Text.Empty);
        return new Rows(lines);
    }

    private static void Add(List<IRenderable> lines, string name, JsonElement value, int depth)
    {
        if (IsDefault(value))
        {
            return;
        }

        var indent = new string(' ', 2 * depth);
        switch (value.ValueKind)
        {
            case JsonValueKind.Object:
                lines.Add(new Markup($"{indent}[blue]{Markup.Escape(name)}:[/]"));
                foreach (var property in value.EnumerateObject())
                {
                    Add(lines, property.Name, property.Value, depth + 1);
                }

                break;
            case JsonValueKind.Array when value.EnumerateArray().All(v => v.ValueKind is not (JsonValueKind.Object or JsonValueKind.Array)):
                lines.Add(new Markup($"{indent}[blue]{Markup.Escape(name)}:[/] {Markup.Escape(string.Join(' ', value.EnumerateArray().Select(Scalar)))}"));
                break;
            case JsonValueKind.Array:
                lines.Add(new Markup($"{indent}[blue]{Markup.Escape(name)}:[/]"));
                var i = 0;
                foreach (var item in value.EnumerateArray())
                {
                    Add(lines, $"[{i++}]", item, depth + 1);
                }

                break;
            default:
                lines.Add(new Markup($"{indent}[blue]{Markup.Escape(name)}:[/] {Markup.Escape(Scalar(value))}"));
                break;
        }
    }

    private static bool IsDefault(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.String => value.GetString() is "" or null || value.GetString()!.EndsWith("_UNSPECIFIED", StringComparison.Ordinal),
        JsonValueKind.Array => value.GetArrayLength() == 0,
        JsonValueKind.Object => !value.EnumerateObject().Any(p => !IsDefault(p.Value)),
        JsonValueKind.False or JsonValueKind.Null => true,
        _ => false,
    };

    private static string Scalar(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.String => value.GetString()!,
        JsonValueKind.Number => value.GetRawText(),
        _ => value.GetRawText(),
    };

    /// <summary>The one-line form (<c>--compact</c>, and on a pipe): topic, sequence, correlation id, type and compact JSON.</summary>
    public static string Line(BusMessage message, IMessage? decoded, string? text)
    {
        var head = new StringBuilder().Append(message.Topic).Append(" seq=").Append(message.Sequence.ToString(CultureInfo.InvariantCulture)).Append(" cid=").Append(message.CorrelationId).Append(' ');
        if (decoded is not null)
        {
            return head.Append(decoded.Descriptor.Name).Append(' ').Append(EventDecoder.ToJson(decoded)).ToString();
        }

        return head.Append(text ?? "base64:" + Convert.ToBase64String(message.Payload.Span)).ToString();
    }
}
