using System.CommandLine;

namespace DaemonEye.Cli.Commands;

/// <summary>
/// <c>--last N</c> on <c>subscribe</c> and <c>alerts tail</c>: the agent replays retained messages
/// only to a named durable consumer (docs/durability.md), not "the last N" to an anonymous
/// subscriber. The option is refused with the way that works instead of being silently ignored.
/// </summary>
internal static class Retention
{
    public static Option<int?> AddLastOption() => new("--last")
    {
        Description = "Refused: replay is for durable consumers (subscribe --durable NAME --from-sequence N)",
    };

    /// <summary>True (the reason on stderr) when --last was given.</summary>
    public static bool Refuse(CliContext context, ParseResult parse, Option<int?> last, string pattern)
    {
        if (parse.GetValue(last) is not { } n)
        {
            return false;
        }

        context.Error.WriteLine($"error: --last {n}: not supported: the agent replays retained messages only to a durable consumer; for '{pattern}' on a durable topic use 'subscribe --durable NAME --from-sequence N' (docs/durability.md); without either, messages are printed as they arrive");
        return true;
    }
}
