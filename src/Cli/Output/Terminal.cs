using Spectre.Console;
using Spectre.Console.Rendering;

namespace DaemonEye.Cli.Output;

/// <summary>
/// What stdout is: a terminal (colour, symbols, tables with borders, relative times, live views) or
/// a pipe or file (plain aligned text, absolute times, one sample per line). <c>NO_COLOR</c> (any
/// value) and <c>TERM=dumb</c> turn colour off on a terminal too.
/// </summary>
internal static class Terminal
{
    /// <summary>Width used when stdout is not a terminal: wide enough that nothing wraps.</summary>
    public const int PipeWidth = 4096;

    /// <summary>The console for this process's stdout, as detected.</summary>
    public static IAnsiConsole ForStdout()
    {
        var isTerminal = !Console.IsOutputRedirected;
        var color = isTerminal && WantsColor(Environment.GetEnvironmentVariable("NO_COLOR"), Environment.GetEnvironmentVariable("TERM"));
        return Create(Console.Out, isTerminal, color, isTerminal ? SafeWidth() : PipeWidth);
    }

    /// <summary>A console over <paramref name="writer"/>: a pipe (no colour, no interaction) unless told otherwise.</summary>
    public static IAnsiConsole Create(TextWriter writer, bool isTerminal = false, bool color = false, int width = PipeWidth)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = color ? AnsiSupport.Yes : AnsiSupport.No,
            ColorSystem = color ? ColorSystemSupport.Standard : ColorSystemSupport.NoColors,
            Interactive = isTerminal ? InteractionSupport.Yes : InteractionSupport.No,
            Out = new AnsiConsoleOutput(writer),
        });
        console.Profile.Width = width;
        console.Profile.Capabilities.Unicode = color;
        return console;
    }

    /// <summary>No colour when <c>NO_COLOR</c> is set to anything non-empty (no-color.org) or the terminal is dumb.</summary>
    public static bool WantsColor(string? noColor, string? term) =>
        string.IsNullOrEmpty(noColor) && !string.Equals(term, "dumb", StringComparison.Ordinal);

    /// <summary>
    /// Writes <paramref name="view"/>: as it is on a terminal; on a pipe as plain text with no trailing
    /// spaces (a table pads every cell to its column's width).
    /// </summary>
    public static void Show(this IAnsiConsole console, IRenderable view)
    {
        if (console.IsTerminal())
        {
            console.Write(view);
            return;
        }

        using var text = new StringWriter();
        Create(text, width: console.Profile.Width).Write(view);
        var writer = console.Profile.Out.Writer;
        var all = text.ToString().Replace("\r", string.Empty, StringComparison.Ordinal).TrimEnd('\n');
        if (all.Length == 0)
        {
            return;
        }

        foreach (var line in all.Split('\n'))
        {
            writer.WriteLine(line.TrimEnd());
        }
    }

    /// <summary>Whether the console should get the terminal treatment (borders, relative times, live views).</summary>
    public static bool IsTerminal(this IAnsiConsole console) => console.Profile.Capabilities.Interactive;

    private static int SafeWidth()
    {
        try
        {
            return Console.WindowWidth > 0 ? Console.WindowWidth : 120;
        }
        catch (IOException)
        {
            return 120;
        }
    }
}
