using System.CommandLine;
using System.Text;
using DaemonEye.Client;
using DaemonEye.Topics;

namespace DaemonEye.Cli.Commands;

/// <summary><c>publish &lt;topic&gt; &lt;payload&gt;</c>: publish and wait until the agent has routed it.</summary>
internal static class PublishCommand
{
    public static Command Build(CliContext context)
    {
        var topic = new Argument<string>("topic") { Description = "A concrete topic, e.g. events.process.lifecycle" };
        var payload = new Argument<string>("payload") { Description = "The payload, sent as UTF-8 text; '-' reads it from stdin (bytes as they are, up to the end)" };
        var count = new Option<int>("--count") { Description = "Publish the payload this many times", DefaultValueFactory = _ => 1 };
        var correlationId = new Option<string?>("--correlation-id")
        {
            Description = "Correlation id of the message (with --count N > 1: ID-1 ... ID-N, each with root ID); generated when absent",
        };
        var contentType = new Option<string>("--content-type") { Description = "Media type of the payload", DefaultValueFactory = _ => "text/plain; charset=utf-8" };
        var command = new Command("publish", "Publish a message to the agent's event bus");
        command.Arguments.Add(topic);
        command.Arguments.Add(payload);
        command.Options.Add(count);
        command.Options.Add(correlationId);
        command.Options.Add(contentType);
        command.SetAction((parse, cancellationToken) => AgentConnection.RunAsync(context, async () =>
        {
            var t = parse.GetValue(topic)!;
            var n = parse.GetValue(count);
            var id = parse.GetValue(correlationId);
            if (TopicRules.ValidateTopic(t) is { IsValid: false } v)
            {
                context.Error.WriteLine($"invalid topic '{t}': {v.Error}");
                return CliApplication.Invalid;
            }

            if (n < 1)
            {
                context.Error.WriteLine($"--count is {n}; it must be at least 1");
                return CliApplication.Invalid;
            }

            await using var client = await AgentConnection.ConnectAsync(context, AgentConnection.Options(context, parse), cancellationToken);
            if (client is null)
            {
                return CliApplication.Unavailable;
            }

            // Publishes are fire-and-forget; a refusal (e.g. NOT_AUTHORIZED for a read-only role) comes back
            // as an Error before the barrier's Pong, so it is known when FlushAsync returns.
            var refusals = new List<BusErrorEventArgs>();
            client.ErrorReceived += (_, e) =>
            {
                lock (refusals)
                {
                    refusals.Add(e);
                }
            };
            var text = parse.GetValue(payload)!;
            var bytes = text == "-" ? await ReadAllAsync(context.Input, cancellationToken) : Encoding.UTF8.GetBytes(text);
            var type = parse.GetValue(contentType);
            for (var i = 1; i <= n; i++)
            {
                var options = id is null
                    ? new PublishOptions { ContentType = type }
                    : n == 1
                        ? new PublishOptions { ContentType = type, CorrelationId = id }
                        : new PublishOptions { ContentType = type, CorrelationId = $"{id}-{i}", RootCorrelationId = id };
                await client.PublishAsync(t, bytes, options, cancellationToken);
            }

            // The barrier: once it returns, the agent has routed every message above.
            await client.FlushAsync(cancellationToken);
            lock (refusals)
            {
                if (refusals.Count > 0)
                {
                    context.Error.WriteLine($"the agent refused {refusals.Count} of {n} message(s) to {t}: {refusals[0].Code}: {refusals[0].Message}");
                    return CliApplication.No;
                }
            }

            context.Output.WriteLine($"published {n} message(s) to {t}");
            return CliApplication.Ok;
        }));
        return command;
    }

    private static async Task<byte[]> ReadAllAsync(Stream input, CancellationToken cancellationToken)
    {
        using var buffer = new MemoryStream();
        await input.CopyToAsync(buffer, cancellationToken);
        return buffer.ToArray();
    }
}
