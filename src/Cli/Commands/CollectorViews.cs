using System.Globalization;
using System.Text.Json;
using DaemonEye.Cli.Output;
using DaemonEye.Protocol.Ipc.V1;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace DaemonEye.Cli.Commands;

/// <summary>How <c>status</c> and <c>collectors list</c> show the agent and its collectors: tables and JSON.</summary>
internal static class CollectorViews
{
    /// <summary>
    /// ID, STATE, HEALTH, PID, RESTARTS, LAST HEARTBEAT, REASON (wide: ENABLED, EXECUTABLE too, and
    /// absolute times); then each collector's granted and refused capabilities.
    /// </summary>
    public static IRenderable Table(CliContext context, IEnumerable<CollectorStatus> collectors, OutputFormat format)
    {
        var wide = format == OutputFormat.Wide;
        var console = context.Console;
        string[] headers = wide
            ? ["ID", "STATE", "HEALTH", "PID>", "RESTARTS>", "LAST HEARTBEAT", "ENABLED", "EXECUTABLE", "REASON"]
            : ["ID", "STATE", "HEALTH", "PID>", "RESTARTS>", "LAST HEARTBEAT", "REASON"];
        var table = Styles.Table(console, headers);
        var now = context.Clock.GetUtcNow();
        var list = collectors.ToList();
        foreach (var c in list)
        {
            var cells = new List<IRenderable>
            {
                Styles.Text(c.Id, console.IsTerminal() ? "bold" : null),
                Styles.Status(console, StateName(c.State)),
                Styles.Status(console, HealthName(c.Health)),
                Styles.Text(c.Pid == 0 ? "-" : c.Pid.ToString(CultureInfo.InvariantCulture)),
                Styles.Text(c.Restarts.ToString(CultureInfo.InvariantCulture), c.Restarts > 0 && console.IsTerminal() ? "yellow" : null),
                Styles.Text(Styles.Time(console, LastHeartbeat(c), now, absolute: wide)),
            };
            if (wide)
            {
                cells.Add(Styles.Text(c.Enabled ? "yes" : "no"));
                cells.Add(Styles.Text(c.Executable));
            }

            cells.Add(Styles.Text(c.Reason));
            table.AddRow(cells);
        }

        var lines = new List<IRenderable> { table };

        // Capability negotiation, per collector: what the agent granted and what it refused, and why.
        foreach (var c in list.Where(c => c.Capabilities.Count > 0 || c.RefusedCapabilities.Count > 0))
        {
            lines.Add(Styles.Text($"{c.Id}: granted {(c.Capabilities.Count == 0 ? "nothing" : string.Join(' ', c.Capabilities))}", console.IsTerminal() ? "grey" : null));
            foreach (var refused in c.RefusedCapabilities)
            {
                lines.Add(Styles.Text($"{c.Id}: refused {refused.Capability}: {refused.Reason}", console.IsTerminal() ? "yellow" : null));
            }
        }

        return new Rows(lines);
    }

    /// <summary>The agent's version, uptime, sockets, counters, and the collectors' table.</summary>
    public static IRenderable Status(CliContext context, StatusResponse status, OutputFormat format)
    {
        var console = context.Console;
        var b = status.Broker ?? new BrokerStatistics();
        var r = status.Rpc ?? new RpcStatistics();
        var sec = status.Security ?? new SecurityStatistics();
        var lines = new List<IRenderable>
        {
            Styles.Text($"daemoneye-agent {status.AgentVersion} (pid {status.Pid}), up {CollectorCommands.Duration(TimeSpan.FromMilliseconds(status.UptimeMs))}", console.IsTerminal() ? "bold" : null),
        };
        void Row(string name, string value, string? style = null) => lines.Add(console.IsTerminal()
            ? new Markup($"[bold]{Markup.Escape(name)}[/] {(style is null ? Markup.Escape(value) : $"[{style}]{Markup.Escape(value)}[/]")}")
            : Styles.Text($"{name} {value}"));
        Row("  bus socket", status.BusSocket);
        Row("  ipc socket", status.IpcSocket);
        Row("broker:", $"{b.ConnectionsOpen} connection(s) open, {b.ConnectionsAccepted} accepted; published {b.Published}, delivered {b.Delivered}, dropped {b.Dropped}, unrouted {b.Unrouted}; subscriptions {b.Subscriptions}/{b.MaxSubscribers}; topics {b.ActiveTopics}; protocol errors {b.ProtocolErrors}", b.Dropped > 0 || b.Unrouted > 0 ? "yellow" : null);
        Row("rpc:", $"requests {r.Requests}, responses {r.Responses}, pending {r.Pending}; timeouts {r.Timeouts}, late answers discarded {r.LateResponsesDiscarded}, rejected {r.Rejected}, communication errors {r.CommunicationErrors}", r.Timeouts > 0 || r.CommunicationErrors > 0 ? "yellow" : null);
        Row("security:", $"peers refused bus {sec.PeersRefusedBus}, ipc {sec.PeersRefusedIpc}; denied {Nonzero(sec.Denied)}; limits reached {Nonzero(sec.Limits)}");
        Row("collectors:", status.Collectors.Count.ToString(CultureInfo.InvariantCulture));
        if (status.Collectors.Count > 0)
        {
            lines.Add(Table(context, status.Collectors, format));
        }

        return new Rows(lines);
    }

    private static string Nonzero(IDictionary<string, ulong> counts)
    {
        var hits = counts.Where(p => p.Value > 0).OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key} {p.Value}").ToList();
        return hits.Count == 0 ? "none" : string.Join(", ", hits);
    }

    public static void WriteStatus(Utf8JsonWriter w, StatusResponse status)
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

    public static void WriteCollector(Utf8JsonWriter w, CollectorStatus c)
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
}
