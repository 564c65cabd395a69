using System.CommandLine;

namespace DaemonEye.Cli.Commands;

/// <summary>
/// <c>--last N</c> on <c>subscribe</c> and <c>alerts tail</c>: replaying recent messages needs the
/// agent to retain them, and it retains none (topics are not durable in this version). The option is
/// refused with that reason instead of being silently ignored.
/// </summary>
internal static class Retention
{
    public static Option<int?> AddLastOption() => new("--last")
    {
        Description = "Print the last N retained messages first (refused: the agent retains no messages yet)",
    };

    /// <summary>True (the reason on stderr) when --last was given.</summary>
    public static bool Refuse(CliContext context, ParseResult parse, Option<int?> last, string pattern)
    {
        if (parse.GetValue(last) is not { } n)
        {
            return false;
        }

        context.Error.WriteLine($"error: --last {n}: retention is not configured: the agent keeps no messages for '{pattern}' (topics are not durable in this version), so there is nothing to replay; without --last, messages are printed as they arrive");
        return true;
    }
}
