using System.CommandLine;
using System.Text;
using System.Text.Json;
using DaemonEye.Cli.Output;
using DaemonEye.Client;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.V1;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace DaemonEye.Cli.Commands;

/// <summary>
/// <c>status</c> and <c>collectors list|start|stop|restart|health</c>: the agent's IPC protocol.
/// Exit codes: 0 success; 1 the agent answered with an error (stderr: <c>&lt;Kind&gt;: &lt;message&gt;</c>),
/// or <c>health</c> got an unhealthy answer; 2 invalid input; 3 the agent is not reachable.
/// </summary>
internal static class CollectorCommands
{
    private static readonly JsonWriterOptions JsonOptions = new() { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static Command BuildStatus(CliContext context)
    {
        var command = new Command("status", "The agent's version, uptime, sockets, broker and RPC statistics, and collectors");
        var output = OutputOptions.AddTo(command, "one JSON object");
        var watch = WatchOptions.AddTo(command);
        command.SetAction((parse, cancellationToken) => AgentConnection.RunAsync(context, () =>
            RunViewAsync(context, parse, output, watch, "status", new IpcRequest { Status = new StatusRequest() }, (response, format) => format == OutputFormat.Json
                ? Json(w => CollectorViews.WriteStatus(w, response.Status))
                : CollectorViews.Status(context, response.Status, format), null, null, cancellationToken)));
        return command;
    }

    public static Command BuildCollectors(CliContext context)
    {
        var collectors = new Command("collectors", "List and control the collectors the agent supervises");
        var list = new Command("list", "The collectors: state, health, pid, restarts, last heartbeat");
        var output = OutputOptions.AddTo(list, "an array of collectors");
        var watch = WatchOptions.AddTo(list);
        list.SetAction((parse, cancellationToken) => AgentConnection.RunAsync(context, () =>
            RunViewAsync(context, parse, output, watch, "collectors list", new IpcRequest { ListCollectors = new ListCollectorsRequest() }, (response, format) =>
            {
                var all = response.ListCollectors.Collectors;
                return format == OutputFormat.Json
                    ? Json(w =>
                    {
                        w.WriteStartArray();
                        foreach (var c in all)
                        {
                            CollectorViews.WriteCollector(w, c);
                        }

                        w.WriteEndArray();
                    })
                    : all.Count == 0 ? new Text("no collectors configured\n") : CollectorViews.Table(context, all, format);
            }, null, null, cancellationToken)));
        collectors.Subcommands.Add(list);
        collectors.Subcommands.Add(BuildAction(context, "start", CollectorAction.Start, "Start a stopped or failed collector and wait until it has registered"));
        collectors.Subcommands.Add(BuildAction(context, "stop", CollectorAction.Stop, "Stop a collector: Stop RPC, then SIGTERM, then SIGKILL after the configured times"));
        collectors.Subcommands.Add(BuildAction(context, "restart", CollectorAction.Restart, "Stop, then start a collector"));
        collectors.Subcommands.Add(BuildAction(context, "health", CollectorAction.Health, "Ask a collector for its health over RPC (exit 1 when unhealthy)"));
        collectors.Subcommands.Add(DiagnosticsCommand.Build(context));
        collectors.Subcommands.Add(RpcCommand.BuildConfig(context));
        return collectors;
    }

    /// <summary>
    /// One IPC request shown as a view: once, or with --watch again every interval. JSON is written
    /// as text (one document per sample); tables and the rest as Spectre renderables.
    /// </summary>
    internal static async Task<int> RunViewAsync(CliContext context, ParseResult parse, OutputOptions output, WatchOptions watch, string title, IpcRequest request, Func<IpcResponse, OutputFormat, object> render, Func<IpcResponse, int>? exitCode, int? failureExitCode, CancellationToken cancellationToken)
    {
        var format = output.Get(parse);
        if (watch.Validate(parse) is { } invalid)
        {
            context.Error.WriteLine($"error: {invalid}");
            return CliApplication.Invalid;
        }

        var last = CliApplication.Ok;
        async Task<Sample> TakeAsync(CancellationToken token)
        {
            var (response, code) = await RequestAsync(context, parse, request.Clone(), token);
            if (response is null)
            {
                return Sample.Failed(failureExitCode ?? code);
            }

            last = exitCode?.Invoke(response) ?? CliApplication.Ok;
            switch (render(response, format))
            {
                case string json:
                    // JSON goes out as written, never through the console's wrapping.
                    context.Output.WriteLine(json);
                    context.Output.Flush();
                    return new Sample(Text.Empty, last);
                case IRenderable view:
                    return new Sample(view, last);
                case var other:
                    throw new InvalidOperationException($"a view is a string or a renderable, not {other.GetType()}");
            }
        }

        if (!watch.IsWatching(parse))
        {
            var sample = await TakeAsync(cancellationToken);
            if (sample.View is not null)
            {
                context.Console.Show(sample.View);
            }

            return sample.ExitCode;
        }

        var watched = await watch.RunAsync(context.Console, parse, title, TakeAsync, cancellationToken, inPlace: format != OutputFormat.Json);
        return watched != CliApplication.Ok ? watched : last;
    }

    private static Command BuildAction(CliContext context, string name, CollectorAction action, string description)
    {
        var id = new Argument<string>("id") { Description = "The collector id" };
        var timeout = new Option<double?>("--timeout") { Description = "Seconds to allow (default: the agent's configured times)" };
        var json = new Option<bool>("--json") { Description = "Print the result as one JSON object" };
        var command = new Command(name, description);
        command.Arguments.Add(id);
        command.Options.Add(timeout);
        command.Options.Add(json);
        Option<bool>? graceful = null;
        Option<bool>? force = null;
        if (action is CollectorAction.Stop or CollectorAction.Restart)
        {
            graceful = new Option<bool>("--graceful") { Description = "Let the collector finish in-flight work (default)", DefaultValueFactory = _ => true };
            force = new Option<bool>("--force") { Description = "Not graceful: no Stop request and no graceful timeout; SIGTERM now, SIGKILL after process_manager.force_shutdown_timeout_seconds" };
            command.Options.Add(graceful);
            command.Options.Add(force);
        }

        command.SetAction((parse, cancellationToken) => AgentConnection.RunAsync(context, async () =>
        {
            var collectorId = parse.GetValue(id)!;
            var seconds = parse.GetValue(timeout);
            if (seconds is { } s && (s <= 0 || s * 1000 > uint.MaxValue))
            {
                context.Error.WriteLine($"error: --timeout is {s}; it must be a positive number of seconds");
                return CliApplication.Invalid;
            }

            if (string.IsNullOrWhiteSpace(collectorId))
            {
                context.Error.WriteLine("error: a collector id is required");
                return CliApplication.Invalid;
            }

            var command = new CollectorCommand
            {
                Id = collectorId,
                Action = action,
                Graceful = graceful is not null && parse.GetValue(graceful) && !parse.GetValue(force!),
                TimeoutMs = seconds is { } t ? (uint)Math.Ceiling(t * 1000) : 0,
            };
            var (response, exitCode) = await RequestAsync(context, parse, new IpcRequest { CollectorCommand = command }, cancellationToken);
            if (response is null)
            {
                return exitCode;
            }

            var result = response.CollectorCommand;
            if (parse.GetValue(json))
            {
                context.Output.WriteLine(Json(w =>
                {
                    w.WriteStartObject();
                    w.WriteString("action", name);
                    w.WriteString("message", result.Message);
                    if (result.Collector is not null)
                    {
                        w.WritePropertyName("collector");
                        CollectorViews.WriteCollector(w, result.Collector);
                    }

                    if (result.Health is { } h)
                    {
                        w.WriteStartObject("health");
                        w.WriteBoolean("healthy", h.Healthy);
                        w.WriteString("status", h.Status);
                        w.WriteNumber("uptime_ms", h.UptimeMs);
                        w.WriteStartObject("details");
                        foreach (var (key, value) in h.Details.OrderBy(p => p.Key, StringComparer.Ordinal))
                        {
                            w.WriteString(key, value);
                        }

                        w.WriteEndObject();
                        w.WriteEndObject();
                    }

                    w.WriteEndObject();
                }));
            }
            else
            {
                if (!string.IsNullOrEmpty(result.Message))
                {
                    context.Output.WriteLine(result.Message);
                }

                if (result.Health is { } h)
                {
                    var details = string.Join(", ", h.Details.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key}={p.Value}"));
                    context.Output.WriteLine($"{collectorId}: {(h.Healthy ? "healthy" : "UNHEALTHY")}, status '{h.Status}', up {Duration(TimeSpan.FromMilliseconds(h.UptimeMs))}{(details.Length > 0 ? $" ({details})" : "")}");
                }

                if (result.Collector is not null && action != CollectorAction.Health)
                {
                    context.Console.Show(CollectorViews.Table(context, [result.Collector], OutputFormat.Table));
                }
            }

            if (action == CollectorAction.Health && result.Health is { Healthy: false } unhealthy)
            {
                context.Error.WriteLine($"Unhealthy: collector '{collectorId}' reports '{unhealthy.Status}'");
                return CliApplication.No;
            }

            return CliApplication.Ok;
        }));
        return command;
    }

    /// <summary>Sends one request over the IPC socket; null (reason on stderr) when the agent is not reachable.</summary>
    /// <summary>
    /// Sends one request. On failure the response is null and the exit code is chosen: 3 when the
    /// agent is unreachable, 1 when it refused (with "&lt;Kind&gt;: &lt;message&gt;" on stderr).
    /// </summary>
    internal static async Task<(IpcResponse? Response, int ExitCode)> RequestAsync(CliContext context, ParseResult parse, IpcRequest request, CancellationToken cancellationToken)
    {
        var response = await SendAsync(context, parse, request, cancellationToken);
        if (response is null)
        {
            return (null, CliApplication.Unavailable);
        }

        return Failed(context, response) ? (null, CliApplication.No) : (response, CliApplication.Ok);
    }

    /// <summary>A fresh correlation for a request: the root of what the agent does for it.</summary>
    internal static CorrelationMetadata NewCorrelation()
    {
        var id = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16));
        return new CorrelationMetadata { CorrelationId = id, RootCorrelationId = id, SequenceNumber = 1 };
    }

    private static async Task<IpcResponse?> SendAsync(CliContext context, ParseResult parse, IpcRequest request, CancellationToken cancellationToken)
    {
        var path = AgentIpcClient.ResolveSocketPath(parse.GetValue(context.Config));
        try
        {
            await using var client = await AgentIpcClient.ConnectAsync(path, cancellationToken);
            // A caller that follows what the agent does for the request (task run) chose the id already.
            request.Correlation ??= NewCorrelation();
            return await client.SendAsync(request, cancellationToken);
        }
        catch (BusConnectionException e)
        {
            context.Error.WriteLine($"error: {e.Message}");
            return null;
        }
    }

    private static bool Failed(CliContext context, IpcResponse response)
    {
        if (response.Error is { } error)
        {
            context.Error.WriteLine($"{KindName(error.Kind)}: {error.Message}");
            return true;
        }

        return false;
    }

    /// <summary>The product document's name of an error kind: Timeout, NotFound, InvalidOperation...</summary>
    public static string KindName(RpcErrorKind kind) => kind == RpcErrorKind.Unspecified ? "Error" : kind.ToString();

    internal static string Duration(TimeSpan t) => t.TotalDays >= 1
        ? $"{(int)t.TotalDays}d{t.Hours:00}h{t.Minutes:00}m"
        : t.TotalHours >= 1 ? $"{(int)t.TotalHours}h{t.Minutes:00}m{t.Seconds:00}s" : $"{t.Minutes}m{t.Seconds:00}s";

    internal static string Json(Action<Utf8JsonWriter> write, bool indented = true)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, indented ? JsonOptions : ProtoJson.Compact))
        {
            write(writer);
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }
}
