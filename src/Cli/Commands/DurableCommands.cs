using System.CommandLine;
using DaemonEye.Client;

namespace DaemonEye.Cli.Commands;

/// <summary><c>streams</c>, and the durable half of <c>subscribe --durable NAME</c> (docs/durability.md).</summary>
internal static class DurableCommands
{
    /// <summary><c>subscribe --durable NAME [--from-sequence N]</c>: the options the subscribe command adds.</summary>
    public static (Option<string?> Durable, Option<ulong> FromSequence) SubscribeOptions(Command subscribe)
    {
        var durable = new Option<string?>("--durable") { Description = "Subscribe as durable consumer NAME: resume after its last ack (each printed message is acknowledged)" };
        var from = new Option<ulong>("--from-sequence") { Description = "With --durable, for a new consumer: start at this log sequence (default: new messages only)" };
        subscribe.Options.Add(durable);
        subscribe.Options.Add(from);
        return (durable, from);
    }

    /// <summary>Subscribes durably when <paramref name="consumer"/> is set, else as before.</summary>
    public static Task<BusSubscription> SubscribeAsync(BusClient client, string pattern, string? consumer, ulong fromSequence, CancellationToken cancellationToken) =>
        consumer is null
            ? client.SubscribeAsync(pattern, cancellationToken)
            : client.SubscribeDurableAsync(pattern, new DurableConsumerOptions(consumer, fromSequence > 0 ? DurableStartPosition.FromSequence(fromSequence) : DurableStartPosition.NewOnly), cancellationToken);

    /// <summary>After a message is printed: acknowledge it, when durable.</summary>
    public static void Printed(BusSubscription subscription, BusMessage message)
    {
        if (subscription.Durable is not null)
        {
            subscription.Acknowledge(message);
        }
    }

    /// <summary>On the way out: store the acks not sent yet.</summary>
    public static async Task FinishAsync(BusSubscription subscription)
    {
        if (subscription.Durable is not null)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await subscription.FlushAcksAsync(timeout.Token);
        }
    }

    /// <summary><c>streams</c>: the durable topics, the log's size, and each consumer's position and lag.</summary>
    public static Command BuildStreams(CliContext context)
    {
        var command = new Command("streams", "Durable topics: the log's size, and each durable consumer's position, lag and unacknowledged messages");
        command.SetAction((parse, cancellationToken) => AgentConnection.RunAsync(context, async () =>
        {
            await using var client = await AgentConnection.ConnectAsync(context, AgentConnection.Options(context, parse), cancellationToken);
            if (client is null)
            {
                return CliApplication.Unavailable;
            }

            var streams = await client.GetStreamsAsync(cancellationToken);
            var output = context.Output;
            output.WriteLine($"durable topics: {(streams.Patterns.Count == 0 ? "(durability off)" : string.Join(", ", streams.Patterns))}");
            output.WriteLine($"log: {streams.Messages} messages, {streams.Bytes} bytes, sequences {streams.FirstSequence}..{streams.LastSequence}; refused {streams.Refused}; torn tails at start-up {streams.TornTails}");
            output.WriteLine($"{"CONSUMER",-24} {"PATTERN",-28} {"ACKED",12} {"LAG",12} {"IN FLIGHT",17} ATTACHED");
            foreach (var c in streams.Consumers)
            {
                // Delivered and unacknowledged / the most the agent sends it, while a connection holds it.
                var inFlight = c.MaxInFlight > 0 ? $"{c.InFlight}/{c.MaxInFlight}" : "-";
                output.WriteLine($"{c.Name,-24} {c.Pattern,-28} {c.AckedSequence,12} {c.Lag,12} {inFlight,17} {(c.Attached ? "yes" : "no")}");
            }

            return CliApplication.Ok;
        }));
        return command;
    }
}
