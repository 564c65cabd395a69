using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using DaemonEye.Client;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.V1;

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
        var json = new Option<bool>("--json") { Description = "Print one JSON object" };
        var command = new Command("status", "The agent's version, uptime, sockets, broker and RPC statistics, and collectors");
        command.Options.Add(json);
        command.SetAction((parse, cancellationToken) => AgentConnection.RunAsync(context, async () =>
        {
            var (response, exitCode) = await RequestAsync(context, parse, new IpcRequest { Status = new StatusRequest() }, cancellationToken);
            if (response is null)
            {
                return exitCode;
            }

            var status = response.Status;
            if (parse.GetValue(json))
            {
                context.Output.WriteLine(Json(w => WriteStatus(w, status)));
                return CliApplication.Ok;
            }

            var o = context.Output;
            o.WriteLine($"daemoneye-agent {status.AgentVersion} (pid {status.Pid}), up {Duration(TimeSpan.FromMilliseconds(status.UptimeMs))}");
            o.WriteLine($"  bus socket  {status.BusSocket}");
            o.WriteLine($"  ipc socket  {status.IpcSocket}");
            var b = status.Broker ?? new BrokerStatistics();
            o.WriteLine($"broker: {b.ConnectionsOpen} connection(s) open, {b.ConnectionsAccepted} accepted; published {b.Published}, delivered {b.Delivered}, dropped {b.Dropped}, unrouted {b.Unrouted}; subscriptions {b.Subscriptions}/{b.MaxSubscribers}; topics {b.ActiveTopics}; protocol errors {b.ProtocolErrors}");
            var r = status.Rpc ?? new RpcStatistics();
            o.WriteLine($"rpc: requests {r.Requests}, responses {r.Responses}, pending {r.Pending}; timeouts {r.Timeouts}, late answers discarded {r.LateResponsesDiscarded}, rejected {r.Rejected}, communication errors {r.CommunicationErrors}");
            var sec = status.Security ?? new SecurityStatistics();
            o.WriteLine($"security: peers refused bus {sec.PeersRefusedBus}, ipc {sec.PeersRefusedIpc}; denied {Nonzero(sec.Denied)}; limits reached {Nonzero(sec.Limits)}");
            o.WriteLine($"collectors: {status.Collectors.Count}");
            if (status.Collectors.Count > 0)
            {
                WriteTable(o, status.Collectors);
            }

            return CliApplication.Ok;
        }));
        return command;
    }

    public static Command BuildCollectors(CliContext context)
    {
        var collectors = new Command("collectors", "List and control the collectors the agent supervises");
        var json = new Option<bool>("--json") { Description = "Print a JSON array of collectors" };
        var list = new Command("list", "The collectors: state, health, pid, restarts, last heartbeat");
        list.Options.Add(json);
        list.SetAction((parse, cancellationToken) => AgentConnection.RunAsync(context, async () =>
        {
            var (response, exitCode) = await RequestAsync(context, parse, new IpcRequest { ListCollectors = new ListCollectorsRequest() }, cancellationToken);
            if (response is null)
            {
                return exitCode;
            }

            var all = response.ListCollectors.Collectors;
            if (parse.GetValue(json))
            {
                context.Output.WriteLine(Json(w =>
                {
                    w.WriteStartArray();
                    foreach (var c in all)
                    {
                        WriteCollector(w, c);
                    }

                    w.WriteEndArray();
                }));
            }
            else if (all.Count == 0)
            {
                context.Output.WriteLine("no collectors configured");
            }
            else
            {
                WriteTable(context.Output, all);
            }

            return CliApplication.Ok;
        }));
        collectors.Subcommands.Add(list);
        collectors.Subcommands.Add(BuildAction(context, "start", CollectorAction.Start, "Start a stopped or failed collector and wait until it has registered"));
        collectors.Subcommands.Add(BuildAction(context, "stop", CollectorAction.Stop, "Stop a collector: Stop RPC, then SIGTERM, then SIGKILL after the configured times"));
        collectors.Subcommands.Add(BuildAction(context, "restart", CollectorAction.Restart, "Stop, then start a collector"));
        collectors.Subcommands.Add(BuildAction(context, "health", CollectorAction.Health, "Ask a collector for its health over RPC (exit 1 when unhealthy)"));
        collectors.Subcommands.Add(DiagnosticsCommand.Build(context));
        collectors.Subcommands.Add(RpcCommand.BuildConfig(context));
        return collectors;
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
                        WriteCollector(w, result.Collector);
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
                    WriteTable(context.Output, [result.Collector]);
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

    private static async Task<IpcResponse?> SendAsync(CliContext context, ParseResult parse, IpcRequest request, CancellationToken cancellationToken)
    {
        var path = AgentIpcClient.ResolveSocketPath(parse.GetValue(context.Config));
        try
        {
            await using var client = await AgentIpcClient.ConnectAsync(path, cancellationToken);
            request.Correlation = new CorrelationMetadata
            {
                CorrelationId = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16)),
                SequenceNumber = 1,
            };
            request.Correlation.RootCorrelationId = request.Correlation.CorrelationId;
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

    private static void WriteTable(TextWriter output, IEnumerable<CollectorStatus> collectors)
    {
        var rows = collectors.Select(c => new[]
        {
            c.Id, StateName(c.State), HealthName(c.Health), c.Pid == 0 ? "-" : c.Pid.ToString(CultureInfo.InvariantCulture),
            c.Restarts.ToString(CultureInfo.InvariantCulture), LastHeartbeat(c) is { } t ? t.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture) : "-", c.Reason,
        }).ToList();
        string[] header = ["ID", "STATE", "HEALTH", "PID", "RESTARTS", "LAST HEARTBEAT", "REASON"];
        var widths = header.Select((h, i) => rows.Select(r => r[i].Length).Append(h.Length).Max()).ToArray();
        foreach (var row in rows.Prepend(header))
        {
            var line = new StringBuilder();
            for (var i = 0; i < row.Length; i++)
            {
                line.Append(i == row.Length - 1 ? row[i] : row[i].PadRight(widths[i] + 2));
            }

            output.WriteLine(line.ToString().TrimEnd());
        }

        // Capability negotiation, per collector: what the agent granted and what it refused, and why.
        foreach (var c in collectors.Where(c => c.Capabilities.Count > 0 || c.RefusedCapabilities.Count > 0))
        {
            output.WriteLine($"{c.Id}: granted {(c.Capabilities.Count == 0 ? "nothing" : string.Join(' ', c.Capabilities))}");
            foreach (var refused in c.RefusedCapabilities)
            {
                output.WriteLine($"{c.Id}: refused {refused.Capability}: {refused.Reason}");
            }
        }
    }

    private static string Nonzero(IDictionary<string, ulong> counts)
    {
        var hits = counts.Where(p => p.Value > 0).OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key} {p.Value}").ToList();
        return hits.Count == 0 ? "none" : string.Join(", ", hits);
    }

    private static void WriteStatus(Utf8JsonWriter w, StatusResponse status)
    {
        var b = status.Broker ?? new BrokerStatistics();
        var r = status.Rpc ?? new RpcStatistics();
        w.WriteStartObject();
        w.WriteString("agent_version", status.AgentVersion);
        w.WriteNumber("pid", status.Pid);
        w.WriteNumber("uptime_ms", status.UptimeMs);
        w.WriteString("bus_socket", status.BusSocket);
        w.WriteString("ipc_socket", status.IpcSocket);
        w.WriteStartObject("broker");
        w.WriteNumber("connections_open", b.ConnectionsOpen);
        w.WriteNumber("connections_accepted", b.ConnectionsAccepted);
        w.WriteNumber("published", b.Published);
        w.WriteNumber("delivered", b.Delivered);
        w.WriteNumber("dropped", b.Dropped);
        w.WriteNumber("unrouted", b.Unrouted);
        w.WriteNumber("protocol_errors", b.ProtocolErrors);
        w.WriteNumber("subscriptions", b.Subscriptions);
        w.WriteNumber("max_subscribers", b.MaxSubscribers);
        w.WriteNumber("active_topics", b.ActiveTopics);
        w.WriteEndObject();
        w.WriteStartObject("rpc");
        w.WriteNumber("requests", r.Requests);
        w.WriteNumber("responses", r.Responses);
        w.WriteNumber("timeouts", r.Timeouts);
        w.WriteNumber("late_responses_discarded", r.LateResponsesDiscarded);
        w.WriteNumber("rejected", r.Rejected);
        w.WriteNumber("communication_errors", r.CommunicationErrors);
        w.WriteNumber("pending", r.Pending);
        w.WriteEndObject();
        var sec = status.Security ?? new SecurityStatistics();
        w.WriteStartObject("security");
        w.WriteNumber("peers_refused_bus", sec.PeersRefusedBus);
        w.WriteNumber("peers_refused_ipc", sec.PeersRefusedIpc);
        w.WriteStartObject("denied");
        foreach (var (rule, count) in sec.Denied.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            w.WriteNumber(rule, count);
        }

        w.WriteEndObject();
        w.WriteStartObject("limits");
        foreach (var (limit, count) in sec.Limits.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            w.WriteNumber(limit, count);
        }

        w.WriteEndObject();
        w.WriteEndObject();
        w.WriteStartArray("collectors");
        foreach (var c in status.Collectors)
        {
            WriteCollector(w, c);
        }

        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static void WriteCollector(Utf8JsonWriter w, CollectorStatus c)
    {
        w.WriteStartObject();
        w.WriteString("id", c.Id);
        w.WriteString("state", StateName(c.State));
        w.WriteString("health", HealthName(c.Health));
        if (c.Pid == 0)
        {
            w.WriteNull("pid");
        }
        else
        {
            w.WriteNumber("pid", c.Pid);
        }

        w.WriteNumber("restarts", c.Restarts);
        if (LastHeartbeat(c) is { } t)
        {
            w.WriteString("last_heartbeat", t.ToString("yyyy-MM-ddTHH:mm:ss.fffffffZ", CultureInfo.InvariantCulture));
        }
        else
        {
            w.WriteNull("last_heartbeat");
        }

        w.WriteBoolean("enabled", c.Enabled);
        w.WriteString("executable", c.Executable);
        w.WriteStartArray("capabilities");
        foreach (var capability in c.Capabilities)
        {
            w.WriteStringValue(capability);
        }

        w.WriteEndArray();
        w.WriteStartArray("refused_capabilities");
        foreach (var refused in c.RefusedCapabilities)
        {
            w.WriteStartObject();
            w.WriteString("capability", refused.Capability);
            w.WriteString("reason", refused.Reason);
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteString("reason", c.Reason);
        w.WriteEndObject();
    }

    private static DateTimeOffset? LastHeartbeat(CollectorStatus c) => c.LastHeartbeatUnixNanos == 0 ? null : UnixTime.FromNanos(c.LastHeartbeatUnixNanos);

    /// <summary>Registered, Starting, Running, Stopping, Stopped, Failed (the product's names).</summary>
    private static string StateName(CollectorState state) => state == CollectorState.Unspecified ? "Unknown" : state.ToString();

    /// <summary>Healthy, Degraded, Unhealthy, Unknown.</summary>
    private static string HealthName(CollectorHealth health) => health == CollectorHealth.Unspecified ? "Unknown" : health.ToString();

    internal static string Duration(TimeSpan t) => t.TotalDays >= 1
        ? $"{(int)t.TotalDays}d{t.Hours:00}h{t.Minutes:00}m"
        : t.TotalHours >= 1 ? $"{(int)t.TotalHours}h{t.Minutes:00}m{t.Seconds:00}s" : $"{t.Minutes}m{t.Seconds:00}s";

    internal static string Json(Action<Utf8JsonWriter> write)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, JsonOptions))
        {
            write(writer);
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }
}
