using System.Globalization;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace DaemonEye.Cli.Output;

/// <summary>
/// How the CLI shows things on a terminal: states and severities in colour with a symbol, times
/// relative to now. On a pipe the same calls give plain words and absolute ISO 8601 UTC times.
/// </summary>
internal static class Styles
{
    /// <summary>A table: rounded borders and a bold header on a terminal; bare aligned columns on a pipe.</summary>
    public static Table Table(IAnsiConsole console, params string[] headers)
    {
        var table = new Table();
        if (console.IsTerminal())
        {
            table.Border(TableBorder.Rounded).BorderColor(Color.Grey);
        }
        else
        {
            table.Border(TableBorder.None);
            table.ShowHeaders = true;
        }

        foreach (var header in headers)
        {
            var right = header.EndsWith('>');
            var name = right ? header[..^1] : header;
            var column = new TableColumn(new Markup($"[bold]{Markup.Escape(name)}[/]")) { NoWrap = !console.IsTerminal(), Padding = console.IsTerminal() ? new Padding(1, 0, 1, 0) : new Padding(0, 0, 2, 0) };
            if (right)
            {
                column.RightAligned();
            }

            table.AddColumn(column);
        }

        if (!console.IsTerminal())
        {
            // No borders: the last column needs no padding after it.
            table.Columns[^1].Padding = new Padding(0, 0, 0, 0);
        }

        return table;
    }

    /// <summary>Plain text, escaped for markup.</summary>
    public static Markup Text(string text, string? style = null) =>
        style is null ? new Markup(Markup.Escape(text)) : new Markup($"[{style}]{Markup.Escape(text)}[/]");

    /// <summary>Good things green, warnings yellow, failures red (bold), unknown dim; with a symbol on a terminal.</summary>
    public static IRenderable Status(IAnsiConsole console, string word)
    {
        var (style, symbol) = word.ToLowerInvariant() switch
        {
            "healthy" or "running" or "ok" or "complete" => ("green", "✔"),
            "degraded" or "starting" or "stopping" or "registered" or "partial" or "medium" or "warning" => ("yellow", "▲"),
            "unhealthy" or "failed" or "high" or "critical" or "error" => ("bold red", "✘"),
            "stopped" or "low" or "info" => ("blue", "●"),
            _ => ("grey", "?"),
        };
        return console.IsTerminal() ? Text($"{symbol} {word}", style) : Text(word);
    }

    /// <summary>An alert severity in its colour: critical and high red, medium yellow, low blue.</summary>
    public static Markup Severity(string text, string severity) => Text(text, severity.ToLowerInvariant() switch
    {
        "critical" => "bold white on red",
        "high" => "bold red",
        "medium" => "yellow",
        "low" => "blue",
        _ => "grey",
    });

    /// <summary>"3 s ago", "4 min ago" on a terminal; ISO 8601 UTC on a pipe or with -o wide; "-" when never.</summary>
    public static string Time(IAnsiConsole console, DateTimeOffset? time, DateTimeOffset now, bool absolute = false)
    {
        if (time is not { } t)
        {
            return "-";
        }

        return console.IsTerminal() && !absolute ? Ago(now - t) : ProtoJson.Iso(t);
    }

    /// <summary>How long ago, in the largest unit that fits: "now", "3 s ago", "4 min ago", "2 h ago", "5 d ago"; "in 2 s" for the future.</summary>
    public static string Ago(TimeSpan elapsed)
    {
        if (elapsed < TimeSpan.Zero)
        {
            return "in " + Span(-elapsed);
        }

        return elapsed < TimeSpan.FromSeconds(1) ? "now" : Span(elapsed) + " ago";
    }

    private static string Span(TimeSpan t) => t.TotalSeconds < 60
        ? string.Create(CultureInfo.InvariantCulture, $"{(int)t.TotalSeconds} s")
        : t.TotalMinutes < 60 ? string.Create(CultureInfo.InvariantCulture, $"{(int)t.TotalMinutes} min")
        : t.TotalHours < 48 ? string.Create(CultureInfo.InvariantCulture, $"{(int)t.TotalHours} h")
        : string.Create(CultureInfo.InvariantCulture, $"{(int)t.TotalDays} d");
}
