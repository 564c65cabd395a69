using System.CommandLine;
using System.Globalization;
using DaemonEye.Protocol.Collector.V1;
using DaemonEye.Protocol.Task.V1;
using DaemonEye.Protocol.V1;
using Google.Protobuf;

namespace DaemonEye.Cli.Commands;

/// <summary>
/// <c>rpc &lt;collector&gt; &lt;operation&gt; [--payload-json JSON]</c>, the operator's raw request/reply
/// over the bus (like <c>nats req</c>), and <c>collectors config &lt;id&gt; [--set key=value]...</c>,
/// which reads or changes a collector's live settings through UpdateConfig. Exit codes: 0 answered OK;
/// 1 answered with an error (stderr: <c>&lt;Kind&gt;: &lt;message&gt;</c>); 2 invalid input; 3 no agent.
/// </summary>
internal static class RpcCommand
{
    private static readonly JsonFormatter Formatter = new(JsonFormatter.Settings.Default.WithIndentation().WithFormatDefaultValues(true));

    /// <summary>Operation names the command accepts (case and '-' / '_' do not matter).</summary>
    private static readonly Dictionary<string, RpcOperation> Operations = new(StringComparer.OrdinalIgnoreCase)
    {
        ["start"] = RpcOperation.Start,
        ["stop"] = RpcOperation.Stop,
        ["restart"] = RpcOperation.Restart,
        ["healthcheck"] = RpcOperation.HealthCheck,
        ["updateconfig"] = RpcOperation.UpdateConfig,
        ["getcapabilities"] = RpcOperation.GetCapabilities,
        ["executetask"] = RpcOperation.ExecuteTask,
    };

    private const string OperationNames = "start, stop, restart, health-check, update-config, get-capabilities, execute-task";

    public static Command Build(CliContext context)
    {
        var collector = new Argument<string>("collector") { Description = "The collector id (the call goes to control.collector.<id>)" };
        var operation = new Argument<string>("operation") { Description = $"One of: {OperationNames}" };
        var payload = new Option<string?>("--payload-json") { Description = "The operation's payload as JSON: StopRequest (stop), UpdateConfigRequest (update-config), TaskRequest (execute-task)" };
        var timeout = new Option<double>("--timeout") { Description = "Seconds to wait for the answer", DefaultValueFactory = _ => 30 };
        var command = new Command("rpc", "Send one RPC request to a collector over the bus and print the response or the error kind");
        command.Arguments.Add(collector);
        command.Arguments.Add(operation);
        command.Options.Add(payload);
        command.Options.Add(timeout);
        command.SetAction((parse, cancellationToken) => AgentConnection.RunAsync(context, async () =>
        {
            var name = parse.GetValue(operation)!.Replace("-", string.Empty, StringComparison.Ordinal).Replace("_", string.Empty, StringComparison.Ordinal);
            if (!Operations.TryGetValue(name, out var op))
            {
                context.Error.WriteLine($"error: operation '{parse.GetValue(operation)}' is not an RPC operation; allowed: {OperationNames}");
                return CliApplication.Invalid;
            }

            var seconds = parse.GetValue(timeout);
            if (!(seconds > 0 && seconds <= 3600))
            {
                context.Error.WriteLine($"error: --timeout is {seconds.ToString(CultureInfo.InvariantCulture)}; allowed: more than 0 and at most 3600 seconds");
                return CliApplication.Invalid;
            }

            if (!TryPayload(op, parse.GetValue(payload), out var bytes, out var problem))
            {
                context.Error.WriteLine($"error: {problem}");
                return CliApplication.Invalid;
            }

            return await CallAsync(context, parse, parse.GetValue(collector)!, op, bytes, TimeSpan.FromSeconds(seconds), cancellationToken);
        }));
        return command;
    }

    public static Command BuildConfig(CliContext context)
    {
        var id = new Argument<string>("id") { Description = "The collector id" };
        var set = new Option<string[]>("--set") { Description = "A setting to change, key=value (repeat for several; all are applied or none)", AllowMultipleArgumentsPerToken = false };
        var command = new Command("config", "Show a collector's live settings, or change them with --set key=value (UpdateConfig, validated by the collector)");
        command.Arguments.Add(id);
        command.Options.Add(set);
        command.SetAction((parse, cancellationToken) => AgentConnection.RunAsync(context, async () =>
        {
            var request = new UpdateConfigRequest();
            foreach (var pair in parse.GetValue(set) ?? [])
            {
                var eq = pair.IndexOf('=', StringComparison.Ordinal);
                if (eq <= 0)
                {
                    context.Error.WriteLine($"error: --set '{pair}' is not key=value; for example --set scan_interval_ms=250");
                    return CliApplication.Invalid;
                }

                request.Settings[pair[..eq].Trim()] = pair[(eq + 1)..].Trim();
            }

            return await CallAsync(context, parse, parse.GetValue(id)!, RpcOperation.UpdateConfig, request.ToByteString(), TimeSpan.FromSeconds(30), cancellationToken, settingsOnly: true);
        }));
        return command;
    }

    private static bool TryPayload(RpcOperation operation, string? json, out ByteString payload, out string problem)
    {
        payload = ByteString.Empty;
        problem = string.Empty;
        if (string.IsNullOrWhiteSpace(json))
        {
            return true;
        }

        MessageParser? parser = operation switch
        {
            RpcOperation.Stop => StopRequest.Parser,
            RpcOperation.UpdateConfig => UpdateConfigRequest.Parser,
            RpcOperation.ExecuteTask => TaskRequest.Parser,
            _ => null,
        };
        if (parser is null)
        {
            problem = $"{operation} takes no payload; --payload-json is for stop (StopRequest), update-config (UpdateConfigRequest) and execute-task (TaskRequest)";
            return false;
        }

        try
        {
            payload = JsonParser.Default.Parse(json, parser.ParseFrom(ByteString.Empty).Descriptor).ToByteString();
            return true;
        }
        catch (InvalidProtocolBufferException e)
        {
            problem = $"--payload-json is not a valid {parser.ParseFrom(ByteString.Empty).Descriptor.FullName}: {e.Message}";
            return false;
        }
        catch (InvalidJsonException e)
        {
            problem = $"--payload-json is not valid JSON: {e.Message}";
            return false;
        }
    }

    private static async Task<int> CallAsync(CliContext context, ParseResult parse, string collector, RpcOperation operation, ByteString payload, TimeSpan timeout, CancellationToken cancellationToken, bool settingsOnly = false)
    {
        await using var client = await AgentConnection.ConnectAsync(context, AgentConnection.Options(context, parse), cancellationToken);
        if (client is null)
        {
            return CliApplication.Unavailable;
        }

        var response = await client.CallAsync(collector, operation, payload, timeout, cancellationToken: cancellationToken);
        if (response.Status != RpcStatus.Ok)
        {
            context.Error.WriteLine($"{CollectorCommands.KindName(response.Error?.Kind ?? RpcErrorKind.Unspecified)}: {response.Error?.Message}");
            return CliApplication.No;
        }

        if (settingsOnly)
        {
            var settings = UpdateConfigResponse.Parser.ParseFrom(response.Payload).Settings;
            if (settings.Count == 0)
            {
                context.Output.WriteLine($"collector '{collector}' reports no settings");
            }

            foreach (var (key, value) in settings.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            {
                context.Output.WriteLine($"{key} = {value}");
            }

            return CliApplication.Ok;
        }

        context.Output.WriteLine(Describe(operation, response.Payload));
        return CliApplication.Ok;
    }

    /// <summary>The response payload as JSON when its type is known, else its size.</summary>
    private static string Describe(RpcOperation operation, ByteString payload)
    {
        MessageParser? parser = operation switch
        {
            RpcOperation.Start or RpcOperation.Stop or RpcOperation.Restart => LifecycleResponse.Parser,
            RpcOperation.HealthCheck => HealthCheckResponse.Parser,
            RpcOperation.GetCapabilities => Capabilities.Parser,
            RpcOperation.UpdateConfig => UpdateConfigResponse.Parser,
            RpcOperation.ExecuteTask => TaskResult.Parser,
            _ => null,
        };
        if (parser is null || payload.IsEmpty)
        {
            return payload.IsEmpty ? "OK" : $"OK ({payload.Length} bytes)";
        }

        try
        {
            return Formatter.Format(parser.ParseFrom(payload));
        }
        catch (InvalidProtocolBufferException)
        {
            return $"OK ({payload.Length} bytes, not a {parser.ParseFrom(ByteString.Empty).Descriptor.FullName})";
        }
    }
}
