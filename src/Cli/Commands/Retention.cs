using System.CommandLine;
using DaemonEye.Client;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.Wire;

namespace DaemonEye.Cli.Commands;

/// <summary>
/// <c>--last N</c> on <c>subscribe</c> and <c>alerts tail</c>: first the last N messages the agent's
/// durable log retains on the pattern (IPC <c>retained</c>; only durable topics are retained,
/// docs/durability.md), then new ones. The live subscription is made before the retained messages
/// are asked for, so nothing published in between is missed; a live message that was among the
/// retained ones (the same correlation id) is printed once.
/// </summary>
internal sealed class Retention
{
    /// <summary>At most this many retained messages per request (the agent's limit).</summary>
    public const int MaxLast = 10_000;

    private readonly HashSet<string> _replayed = new(StringComparer.Ordinal);

    public static Option<int?> AddLastOption() => new("--last")
    {
        Description = $"First print the last N (1 to {MaxLast}) messages the agent retains on the pattern (durable topics only: durability.topics), then new ones",
    };

    /// <summary>Null when --last is absent or valid, else why not (exit 2).</summary>
    public static string? Validate(ParseResult parse, Option<int?> last, bool durable) => parse.GetValue(last) switch
    {
        null => null,
        int n when n is < 1 or > MaxLast => $"--last is {n}; allowed: 1 to {MaxLast}",
        _ when durable => "--last with --durable: a durable consumer starts where it left off (or at --from-sequence when new), not at the last N",
        _ => null,
    };

    /// <summary>
    /// The retained messages on <paramref name="pattern"/>, oldest first, remembered so that their
    /// live copies are skipped (<see cref="IsReplayed"/>); null (the reason on stderr) when the agent
    /// refused or could not be reached, with the exit code.
    /// </summary>
    public async Task<(List<BusMessage>? Messages, int ExitCode)> FetchAsync(CliContext context, ParseResult parse, string pattern, int count, CancellationToken cancellationToken)
    {
        var request = new IpcRequest { Retained = new RetainedRequest { Pattern = pattern, Count = (uint)count } };
        var (response, exitCode) = await CollectorCommands.RequestAsync(context, parse, request, cancellationToken);
        if (response is null)
        {
            return (null, exitCode);
        }

        if (response.Retained.Omitted > 0)
        {
            context.Error.WriteLine($"the {response.Retained.Omitted} oldest of the last {count} retained message(s) are left out: the answer is limited to 8 MiB");
        }

        var messages = new List<BusMessage>(response.Retained.Messages.Count);
        foreach (var retained in response.Retained.Messages)
        {
            var publish = retained.Publish.ToByteArray();
            if (!PublishFrame.TryReadLayout(publish, out var layout))
            {
                context.Error.WriteLine($"retained message {retained.Sequence} on {retained.Topic} is not a Publish; skipped");
                continue;
            }

            var message = new BusMessage(retained.Topic, retained.Sequence, publish, layout);
            if (message.CorrelationId.Length > 0)
            {
                _replayed.Add(message.CorrelationId);
            }

            messages.Add(message);
        }

        return (messages, CliApplication.Ok);
    }

    /// <summary>True (once) for a live message that was printed among the retained ones.</summary>
    public bool IsReplayed(BusMessage message) => _replayed.Count > 0 && _replayed.Remove(message.CorrelationId);
}
