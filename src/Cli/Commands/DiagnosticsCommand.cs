using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using DaemonEye.Protocol.Collector.V1;
using DaemonEye.Protocol.V1;
using Google.Protobuf.Collections;

namespace DaemonEye.Cli.Commands;

/// <summary>
/// <c>collectors diagnostics &lt;id&gt;</c>: the collector's internals (versions, queue depths, counters,
/// settings) through RPC_OPERATION_DIAGNOSTICS over the bus (control.health.diagnostics). Exit codes:
/// 0 answered; 1 the call failed (stderr: <c>&lt;Kind&gt;: &lt;message&gt;</c>); 2 invalid input; 3 no agent.
/// </summary>
internal static class DiagnosticsCommand
{
    private static readonly JsonWriterOptions JsonOptions = new() { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static Command Build(CliContext context)
    {
        var id = new Argument<string>("id") { Description = "The collector id" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object" };
        var timeout = new Option<double>("--timeout") { Description = "Seconds to wait for the answer", DefaultValueFactory = _ => 10 };
        var command = new Command("diagnostics", "Ask a collector for its internals over RPC: versions, queue depths, counters, settings");
        command.Arguments.Add(id);
        command.Options.Add(json);
        command.Options.Add(timeout);
        command.SetAction((parse, cancellationToken) => AgentConnection.RunAsync(context, async () =>
        {
            var collectorId = parse.GetValue(id)!;
            var seconds = parse.GetValue(timeout);
            if (!(seconds > 0 && seconds <= 3600))
            {
                context.Error.WriteLine($"error: --timeout is {seconds.ToString(CultureInfo.InvariantCulture)}; allowed: more than 0 and at most 3600 seconds");
                return CliApplication.Invalid;
            }

            if (string.IsNullOrWhiteSpace(collectorId))
            {
                context.Error.WriteLine("error: a collector id is required");
                return CliApplication.Invalid;
            }

            await using var client = await AgentConnection.ConnectAsync(context, AgentConnection.Options(context, parse), cancellationToken);
            if (client is null)
            {
                return CliApplication.Unavailable;
            }

            var response = await client.CallAsync(collectorId, RpcOperation.Diagnostics, timeout: TimeSpan.FromSeconds(seconds), cancellationToken: cancellationToken);
            if (response.Status != RpcStatus.Ok)
            {
                context.Error.WriteLine($"{CollectorCommands.KindName(response.Error?.Kind ?? RpcErrorKind.Unspecified)}: {response.Error?.Message}");
                return CliApplication.No;
            }

            var diagnostics = Diagnostics.Parser.ParseFrom(response.Payload);
            context.Output.Write(parse.GetValue(json) ? ToJson(diagnostics) : ToText(diagnostics));
            return CliApplication.Ok;
        }));
        return command;
    }

    internal static string ToText(Diagnostics d)
    {
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"{d.CollectorId} (pid {d.Pid}), up {CollectorCommands.Duration(TimeSpan.FromMilliseconds(d.UptimeMs))}\n");
        Section(text, "versions", d.Versions, v => v);
        Section(text, "queue depths", d.QueueDepths, v => v.ToString(CultureInfo.InvariantCulture));
        Section(text, "counters", d.Counters, v => v.ToString(CultureInfo.InvariantCulture));
        Section(text, "settings", d.Settings, v => v);
        return text.ToString();
    }

    private static void Section<T>(StringBuilder text, string title, MapField<string, T> entries, Func<T, string> format)
    {
        text.Append(title).Append(":\n");
        var width = entries.Count == 0 ? 0 : entries.Keys.Max(k => k.Length);
        foreach (var (key, value) in entries.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            text.Append("  ").Append(key.PadRight(width)).Append("  ").Append(format(value)).Append('\n');
        }
    }

    internal static string ToJson(Diagnostics d)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, JsonOptions))
        {
            w.WriteStartObject();
            w.WriteString("collector_id", d.CollectorId);
            w.WriteNumber("pid", d.Pid);
            w.WriteNumber("uptime_ms", d.UptimeMs);
            w.WriteStartObject("versions");
            foreach (var (key, value) in d.Versions.OrderBy(p => p.Key, StringComparer.Ordinal))
            {
                w.WriteString(key, value);
            }

            w.WriteEndObject();
            foreach (var (name, map) in new[] { ("queue_depths", d.QueueDepths), ("counters", d.Counters) })
            {
                w.WriteStartObject(name);
                foreach (var (key, value) in map.OrderBy(p => p.Key, StringComparer.Ordinal))
                {
                    w.WriteNumber(key, value);
                }

                w.WriteEndObject();
            }

            w.WriteStartObject("settings");
            foreach (var (key, value) in d.Settings.OrderBy(p => p.Key, StringComparer.Ordinal))
            {
                w.WriteString(key, value);
            }

            w.WriteEndObject();
            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.ToArray()) + "\n";
    }
}
