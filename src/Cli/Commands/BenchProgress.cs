using System.Globalization;
using Spectre.Console;

namespace DaemonEye.Cli.Commands;

/// <summary>
/// What a running benchmark has done so far, for the progress display: a counter the run points at
/// its own tallies (read racily: it is for people, never for the result).
/// </summary>
internal sealed class BenchProgress
{
    private static readonly TimeSpan PipeEvery = TimeSpan.FromSeconds(2);

    private Func<long> _done = () => 0;

    /// <summary>Set by the run once its workers exist.</summary>
    public Func<long> Done
    {
        get => Volatile.Read(ref _done);
        set => Volatile.Write(ref _done, value);
    }

    /// <summary>
    /// Waits for <paramref name="run"/>, showing <see cref="Done"/> of <paramref name="total"/> (or,
    /// for a timed run, the time of <paramref name="duration"/>): a progress bar on a terminal, a line
    /// on stderr every 2 s on a pipe.
    /// </summary>
    public async Task<T> ShowAsync<T>(CliContext context, string what, long total, TimeSpan? duration, Task<T> run)
    {
        var started = context.Clock.GetTimestamp();
        double Fraction() => duration is { } d
            ? Math.Min(1, context.Clock.GetElapsedTime(started) / d)
            : total <= 0 ? 0 : Math.Min(1, Done() / (double)total);
        string Line() => string.Create(CultureInfo.InvariantCulture, $"bench: {Done():N0}{(total > 0 && duration is null ? $" of {total:N0}" : string.Empty)} {what}, {context.Clock.GetElapsedTime(started).TotalSeconds:0.0} s");

        if (context.IsTerminal)
        {
            await context.Console.Progress()
                .AutoClear(true)
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new SpinnerColumn())
                .StartAsync(async progress =>
                {
                    var task = progress.AddTask(Markup.Escape(what), maxValue: 1);
                    while (!run.IsCompleted)
                    {
                        await Task.WhenAny(run, Task.Delay(TimeSpan.FromMilliseconds(100), context.Clock));
                        task.Value = Fraction();
                        task.Description = Markup.Escape(Line()["bench: ".Length..]);
                    }

                    task.Value = 1;
                });
        }
        else
        {
            while (!run.IsCompleted)
            {
                await Task.WhenAny(run, Task.Delay(PipeEvery, context.Clock));
                if (!run.IsCompleted)
                {
                    context.Error.WriteLine(Line());
                }
            }
        }

        return await run;
    }
}
