using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace DaemonEye.Cli.Output;

/// <summary>One sample of a watched view: what to show, or (View null) the exit code to stop with.</summary>
internal readonly record struct Sample(IRenderable? View, int ExitCode)
{
    public static Sample Failed(int exitCode) => new(null, exitCode);
}

/// <summary>
/// <c>--watch</c>, <c>--interval SECONDS</c> and <c>--samples N</c> on list views: the view again every
/// interval, redrawn in place on a terminal (Spectre live display), one sample after another on a pipe.
/// </summary>
internal sealed class WatchOptions
{
    private readonly Option<bool> _watch;
    private readonly Option<double> _interval;
    private readonly Option<int> _samples;

    private WatchOptions(Option<bool> watch, Option<double> interval, Option<int> samples)
    {
        _watch = watch;
        _interval = interval;
        _samples = samples;
    }

    public static WatchOptions AddTo(Command command, bool always = false)
    {
        var watch = new Option<bool>("--watch", "-w") { Description = "Show the view again every --interval seconds until Ctrl-C (in place on a terminal)" };
        var interval = new Option<double>("--interval") { Description = "Seconds between samples (default 2)", DefaultValueFactory = _ => 2 };
        var samples = new Option<int>("--samples") { Description = "Stop after this many samples (0: until Ctrl-C)" };
        if (!always)
        {
            command.Options.Add(watch);
        }

        command.Options.Add(interval);
        command.Options.Add(samples);
        return new WatchOptions(watch, interval, samples);
    }

    public bool IsWatching(ParseResult parse) => parse.GetValue(_watch);

    /// <summary>Null when the options are valid, else the message.</summary>
    public string? Validate(ParseResult parse)
    {
        var seconds = parse.GetValue(_interval);
        if (!(seconds >= 0.1 && seconds <= 3600))
        {
            return $"--interval is {seconds.ToString(CultureInfo.InvariantCulture)}; allowed: 0.1 to 3600 seconds";
        }

        return parse.GetValue(_samples) < 0 ? $"--samples is {parse.GetValue(_samples)}; it must be 0 (no limit) or more" : null;
    }

    public TimeSpan Interval(ParseResult parse) => TimeSpan.FromSeconds(parse.GetValue(_interval));

    public int Samples(ParseResult parse) => parse.GetValue(_samples);

    /// <summary>
    /// Takes a sample every interval and shows it: in place on a terminal (with a header line), else
    /// written out one after another. Returns the first failing sample's exit code, else 0.
    /// </summary>
    public async Task<int> RunAsync(IAnsiConsole console, ParseResult parse, string title, Func<CancellationToken, Task<Sample>> sample, CancellationToken cancellationToken, bool inPlace = true)
    {
        var interval = Interval(parse);
        var limit = Samples(parse);
        var taken = 0;
        var first = await sample(cancellationToken);
        if (first.View is null)
        {
            return first.ExitCode;
        }

        using var timer = new PeriodicTimer(interval);

        if (!console.IsTerminal() || !inPlace)
        {
            var current = first;
            while (true)
            {
                console.Show(current.View!);
                console.Profile.Out.Writer.Flush();
                if (limit > 0 && ++taken >= limit)
                {
                    return 0;
                }

                await timer.WaitForNextTickAsync(cancellationToken);
                current = await sample(cancellationToken);
                if (current.View is null)
                {
                    return current.ExitCode;
                }

                if (inPlace)
                {
                    console.WriteLine();
                }
            }
        }

        var exitCode = 0;
        await console.Live(Frame(title, interval, first.View)).AutoClear(false).StartAsync(async live =>
        {
            while (!(limit > 0 && ++taken >= limit))
            {
                await timer.WaitForNextTickAsync(cancellationToken);
                var next = await sample(cancellationToken);
                if (next.View is null)
                {
                    exitCode = next.ExitCode;
                    return;
                }

                live.UpdateTarget(Frame(title, interval, next.View));
            }
        });
        return exitCode;
    }

    private static Rows Frame(string title, TimeSpan interval, IRenderable view) => new(
        new Markup($"[grey]{Markup.Escape(title)} · every {interval.TotalSeconds.ToString("0.##", CultureInfo.InvariantCulture)} s · {DateTimeOffset.Now:HH:mm:ss} · Ctrl-C to stop[/]"),
        view);
}
