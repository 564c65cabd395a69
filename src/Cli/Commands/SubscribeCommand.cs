using System.CommandLine;
using System.Text;
using System.Text.Json;
using DaemonEye.Client;
using DaemonEye.Topics;

namespace DaemonEye.Cli.Commands;

/// <summary><c>subscribe &lt;pattern&gt;</c>: print messages as they arrive (after the last N retained ones with <c>--last N</c>).</summary>
internal static class SubscribeCommand
{
    // Output for people and jq, not for embedding in HTML: keep '+', '<', non-ASCII as they are.
    private static readonly JsonWriterOptions JsonOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    public static Command Build(CliContext context)
    {
        var pattern = new Argument<string>("pattern") { Description = "A topic pattern: '+' is one segment, a final '#' any number" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object per line (NDJSON)" };
        var count = new Option<long>("--count") { Description = "Exit after this many messages (0: run until Ctrl-C)" };
        var compact = new Option<bool>("--compact") { Description = "One line per message also on a terminal (the default on a pipe)" };
        var last = Retention.AddLastOption();
        var command = new Command("subscribe", "Print messages published to topics that match a pattern (--last N: first the last N the agent retains; several lines each on a terminal, one on a pipe); ready once 'subscribed to ...' is on stderr");
        command.Arguments.Add(pattern);
        command.Options.Add(json);
        command.Options.Add(count);
        command.Options.Add(compact);
        command.Options.Add(last);
        var (durable, fromSequence) = DurableCommands.SubscribeOptions(command);
        command.SetAction((parse, cancellationToken) => AgentConnection.RunAsync(context, async () =>
        {
            var p = parse.GetValue(pattern)!;
            var limit = parse.GetValue(count);
            var asJson = parse.GetValue(json);
            if (TopicRules.ValidatePattern(p) is { IsValid: false } v)
            {
                context.Error.WriteLine($"invalid pattern '{p}': {v.Error}");
                return CliApplication.Invalid;
            }

            if (limit < 0)
            {
                context.Error.WriteLine($"--count is {limit}; it must be 0 (no limit) or more");
                return CliApplication.Invalid;
            }

            if (Retention.Validate(parse, last, parse.GetValue(durable) is not null) is { } lastProblem)
            {
                context.Error.WriteLine($"error: {lastProblem}");
                return CliApplication.Invalid;
            }

            var pretty = context.IsTerminal && !asJson && !parse.GetValue(compact);

            await using var client = await AgentConnection.ConnectAsync(context, AgentConnection.Options(context, parse), cancellationToken);
            if (client is null)
            {
                return CliApplication.Unavailable;
            }

            client.Dropped += (_, e) => context.Error.WriteLine($"dropped {e.Count} message(s) (total {e.Total}): {e.Reason}");
            client.Disconnected += (_, e) => context.Error.WriteLine($"lost the connection to the agent ({e.Reason?.Message ?? "closed"}); reconnecting");
            client.Reconnected += (_, e) => context.Error.WriteLine($"reconnected (connection {e.ConnectionId}); restored {e.RestoredSubscriptions} subscription(s)");
            client.ErrorReceived += (_, e) => context.Error.WriteLine($"agent error {e.Code}: {e.Message}");

            var subscription = await DurableCommands.SubscribeAsync(client, p, parse.GetValue(durable), parse.GetValue(fromSequence), cancellationToken);
            context.Error.WriteLine($"subscribed to {p} (subscription {subscription.Id}, connection {client.ConnectionId})");
            var received = 0L;
            using var stdout = new MemoryStream();
            void Print(BusMessage message)
            {
                if (pretty)
                {
                    context.Console.Write(EventView.Render(message, EventDecoder.TryDecode(message), Printable(message.Payload.Span), context.Clock.GetUtcNow()));
                }
                else
                {
                    context.Output.WriteLine(asJson ? ToJson(message, stdout) : ToLine(message));
                }

                context.Output.Flush();
            }

            var retention = new Retention();
            if (parse.GetValue(last) is { } n)
            {
                // After the live subscription: what is published meanwhile comes live, once.
                var (retained, failed) = await retention.FetchAsync(context, parse, p, n, cancellationToken);
                if (retained is null)
                {
                    return failed;
                }

                foreach (var message in retained)
                {
                    Print(message);
                    if (limit > 0 && ++received >= limit)
                    {
                        return CliApplication.Ok;
                    }
                }
            }

            await foreach (var message in subscription.ReadAllAsync(cancellationToken))
            {
                if (retention.IsReplayed(message))
                {
                    continue;
                }

                Print(message);
                DurableCommands.Printed(subscription, message);
                if (limit > 0 && ++received >= limit)
                {
                    break;
                }
            }

            await DurableCommands.FinishAsync(subscription);

            return CliApplication.Ok;
        }));
        return command;
    }

    internal static string ToLine(BusMessage message) => EventView.Line(message, EventDecoder.TryDecode(message), Printable(message.Payload.Span));

    /// <summary>The payload as text when it is UTF-8 without control characters (tabs allowed), else null.</summary>
    private static string? Printable(ReadOnlySpan<byte> payload) => TryText(payload) is { } text && !text.Any(c => char.IsControl(c) && c != '\t') ? text : null;

    internal static string ToJson(BusMessage message, MemoryStream buffer)
    {
        buffer.SetLength(0);
        using (var writer = new Utf8JsonWriter(buffer, JsonOptions))
        {
            var correlation = message.Correlation;
            writer.WriteStartObject();
            writer.WriteString("topic", message.Topic);
            writer.WriteNumber("sequence", message.Sequence);
            writer.WriteString("correlation_id", correlation.CorrelationId);
            writer.WriteString("root_correlation_id", correlation.RootCorrelationId);
            if (correlation.ParentCorrelationId.Length > 0)
            {
                writer.WriteString("parent_correlation_id", correlation.ParentCorrelationId);
            }

            writer.WriteNumber("publisher_sequence", correlation.SequenceNumber);
            writer.WriteString("timestamp", message.Timestamp.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fffffff'Z'", System.Globalization.CultureInfo.InvariantCulture));
            writer.WriteNumber("timestamp_unix_nanos", message.TimestampUnixNanos);
            if (message.ContentType.Length > 0)
            {
                writer.WriteString("content_type", message.ContentType);
            }

            if (EventDecoder.TryDecode(message) is { } decoded)
            {
                // The decoded event: its .proto field names and values (proto3 JSON mapping).
                writer.WriteString("event_type", decoded.Descriptor.FullName);
                writer.WritePropertyName("event");
                writer.WriteRawValue(EventDecoder.ToJson(decoded), skipInputValidation: true);
            }
            else if (TryText(message.Payload.Span) is { } text)
            {
                writer.WriteString("payload", text);
            }
            else
            {
                writer.WriteBase64String("payload_base64", message.Payload.Span);
            }

            writer.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }

    private static string? TryText(ReadOnlySpan<byte> payload)
    {
        try
        {
            return StrictUtf8.GetString(payload);
        }
        catch (DecoderFallbackException)
        {
            return null;
        }
    }
}
