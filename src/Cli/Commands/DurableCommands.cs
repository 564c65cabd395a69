using System.CommandLine;
using System.Globalization;
using DaemonEye.Cli.Output;
using DaemonEye.Client;
using DaemonEye.Protocol.V1;
using Spectre.Console;

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
        var output = OutputOptions.AddTo(command, "one object: patterns, first_sequence, last_sequence, messages, bytes, refused, torn_tails, consumers");
        var watch = WatchOptions.AddTo(command);
        command.SetAction((parse, cancellationToken) => AgentConnection.RunAsync(context, async () =>
        {
            if (watch.Validate(parse) is { } invalid)
            {
                context.Error.WriteLine($"error: {invalid}");
                return CliApplication.Invalid;
            }

            await using var client = await AgentConnection.ConnectAsync(context, AgentConnection.Options(context, parse), cancellationToken);
            if (client is null)
            {
                return CliApplication.Unavailable;
            }

            var format = output.Get(parse);
            async Task<Sample> TakeAsync(CancellationToken token)
            {
                var streams = await client.GetStreamsAsync(token);
                if (format != OutputFormat.Json)
                {
                    return new Sample(View(context, streams), CliApplication.Ok);
                }

                // JSON goes out as written, one document per sample, never through the console's wrapping.
                context.Output.WriteLine(ProtoJson.Format(streams, indented: true));
                context.Output.Flush();
                return new Sample(Text.Empty, CliApplication.Ok);
            }

            if (watch.IsWatching(parse))
            {
                return await watch.RunAsync(context.Console, parse, "streams", TakeAsync, cancellationToken, inPlace: format != OutputFormat.Json);
            }

            context.Console.Show((await TakeAsync(cancellationToken)).View!);
            return CliApplication.Ok;
        }));
        return command;
    }

    private static Rows View(CliContext context, StreamsReply streams)
    {
        var n = CultureInfo.InvariantCulture;
        var summary = Styles.Text(string.Create(n, $"durable topics: {(streams.Patterns.Count == 0 ? "(durability off)" : string.Join(", ", streams.Patterns))}\n") +
            string.Create(n, $"log: {streams.Messages} messages, {streams.Bytes} bytes, sequences {streams.FirstSequence}..{streams.LastSequence}; refused {streams.Refused}; torn tails at start-up {streams.TornTails}"));
        var table = Styles.Table(context.Console, "CONSUMER", "PATTERN", "ACKED>", "LAG>", "IN FLIGHT>", "ATTACHED");
        foreach (var c in streams.Consumers)
        {
            table.AddRow(
                Styles.Text(c.Name),
                Styles.Text(c.Pattern),
                Styles.Text(c.AckedSequence.ToString(n)),
                Styles.Text(c.Lag.ToString(n)),

                // Delivered and unacknowledged / the most the agent sends it, while a connection holds it.
                Styles.Text(c.MaxInFlight > 0 ? string.Create(n, $"{c.InFlight}/{c.MaxInFlight}") : "-"),
                Styles.Text(c.Attached ? "yes" : "no", !context.IsTerminal ? null : c.Attached ? "green" : "grey"));
        }

        return new Rows(summary, table);
    }
}
