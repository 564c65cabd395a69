using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using DaemonEye.Cli.Output;
using DaemonEye.Protocol.Alert.V1;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.Process.V1;
using DaemonEye.Protocol.Task.V1;
using DaemonEye.Topics;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace DaemonEye.Cli.Commands;

/// <summary>
/// <c>task run</c>, <c>rules list|test|run</c> and <c>alerts tail</c>. Exit codes: 0 success; 1 the
/// agent answered with an error (stderr: <c>&lt;Kind&gt;: &lt;message&gt;</c>), a task result is
/// partial, or a rule file has problems; 2 invalid input; 3 the agent is not reachable.
/// </summary>
internal static class CoordinationCommands
{
    private static readonly JsonFormatter Formatter = new(JsonFormatter.Settings.Default.WithPreserveProtoFieldNames(true).WithFormatDefaultValues(false));

    public static Command BuildTask(CliContext context)
    {
        var task = new Command("task", "Run tasks on the collectors that execute them");
        var type = new Argument<string>("type") { Description = "The task type, e.g. process.snapshot" };
        var parameters = new Option<string[]>("--param") { Description = "A task parameter key=value (repeatable)", AllowMultipleArgumentsPerToken = false };
        var timeout = new Option<double?>("--timeout") { Description = "Seconds to wait for every collector (default: coordination.default_task_timeout_seconds)" };
        var priority = new Option<int>("--priority") { Description = "Higher runs first when tasks wait for a free instance (default 0)" };
        var json = new Option<bool>("--json") { Description = "Print the aggregated result as one JSON object (payloads decoded where the type is known)" };
        var run = new Command("run", "Run one task: one assignment per collector type that executes it, results aggregated; exit 1 when partial");
        run.Arguments.Add(type);
        run.Options.Add(parameters);
        run.Options.Add(timeout);
        run.Options.Add(priority);
        run.Options.Add(json);
        run.SetAction((parse, cancellationToken) => AgentConnection.RunAsync(context, async () =>
        {
            var request = new TaskRunRequest { TaskType = parse.GetValue(type)!, Priority = parse.GetValue(priority) };
            foreach (var p in parse.GetValue(parameters) ?? [])
            {
                var eq = p.IndexOf('=', StringComparison.Ordinal);
                if (eq <= 0)
                {
                    context.Error.WriteLine($"--param '{p}' is not key=value");
                    return CliApplication.Invalid;
                }

                request.Parameters[p[..eq]] = p[(eq + 1)..];
            }

            if (parse.GetValue(timeout) is { } seconds)
            {
                if (!(seconds > 0 && seconds <= 86400))
                {
                    context.Error.WriteLine($"--timeout is {seconds.ToString(CultureInfo.InvariantCulture)}; allowed: more than 0 up to 86400 seconds");
                    return CliApplication.Invalid;
                }

                request.TimeoutMs = (uint)Math.Max(1, seconds * 1000);
            }

            var (response, exitCode) = await TaskProgress.RunAsync(context, parse, request, cancellationToken);
            if (response is null)
            {
                return exitCode;
            }

            var result = response.TaskRun;
            if (parse.GetValue(json))
            {
                context.Output.WriteLine(ToJson(result).ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));
            }
            else
            {
                WriteResult(context, result);
            }

            return result.Partial ? CliApplication.No : CliApplication.Ok;
        }));
        task.Subcommands.Add(run);
        return task;
    }

    public static Command BuildRules(CliContext context)
    {
        var rules = new Command("rules", "The agent's SQL detection rules");
        var list = new Command("list", "The rules the agent loads now, and the rule files it cannot load (file:line); exit 1 when any");
        var output = OutputOptions.AddTo(list, "one object: directory, interval_seconds, rules, problems");
        var watch = WatchOptions.AddTo(list);
        list.SetAction((parse, cancellationToken) => AgentConnection.RunAsync(context, () =>
            CollectorCommands.RunViewAsync(context, parse, output, watch, "rules list", new IpcRequest { RulesList = new RulesListRequest() }, (response, format) =>
            {
                var r = response.RulesList;
                if (format == OutputFormat.Json)
                {
                    return ProtoJson.Format(r, indented: true);
                }

                WriteProblems(context.Error, r.Problems);
                return RulesView(context, r, format);
            }, response => response.RulesList.Problems.Count > 0 ? CliApplication.No : CliApplication.Ok, null, cancellationToken)));
        var file = new Argument<FileInfo>("file") { Description = "A rule file (YAML: id, name, severity, description, sql)" };
        var test = new Command("test", "Run one rule file once against fresh snapshots of what it reads (processes, connections, file events...) and print the rows (no alerts are published)");
        test.Arguments.Add(file);
        test.SetAction((parse, cancellationToken) => AgentConnection.RunAsync(context, async () =>
        {
            var path = parse.GetValue(file)!;
            if (!path.Exists)
            {
                context.Error.WriteLine($"rule file '{path.FullName}' does not exist");
                return CliApplication.Invalid;
            }

            var content = await File.ReadAllTextAsync(path.FullName, cancellationToken);
            var (response, exitCode) = await CollectorCommands.RequestAsync(context, parse, new IpcRequest { RulesTest = new RulesTestRequest { FileName = path.FullName, Content = content } }, cancellationToken);
            if (response is null)
            {
                return exitCode;
            }

            var r = response.RulesTest;
            foreach (var task in r.Tasks)
            {
                context.Output.WriteLine($"{task.TaskType} task {task.TaskId}: from {string.Join(", ", task.Results.Select(x => x.CollectorId))}{(task.Partial ? " (partial: " + string.Join("; ", task.Missing.Select(m => m.Reason)) + ")" : string.Empty)}");
            }

            if (r.TableRows.Count > 0)
            {
                context.Output.WriteLine("rows loaded: " + string.Join(", ", r.TableRows.OrderBy(t => t.Key, StringComparer.Ordinal).Select(t => $"{t.Key} {t.Value}")));
            }

            if (r.Problems.Count > 0)
            {
                WriteProblems(context.Error, r.Problems);
                return CliApplication.No;
            }

            context.Output.WriteLine($"rule {r.Rule.Id} ({r.Rule.Severity}): {r.Rows.Count} row(s) in {r.EvaluationUs / 1000.0:0.###} ms");
            WriteTable(context.Output, r.Columns, r.Rows.Select(row => row.Values.ToArray()).ToList());
            return CliApplication.Ok;
        }));
        var run = new Command("run", "Run every rule now against a fresh snapshot and publish the alerts");
        run.SetAction((parse, cancellationToken) => AgentConnection.RunAsync(context, async () =>
        {
            var (response, exitCode) = await CollectorCommands.RequestAsync(context, parse, new IpcRequest { RulesRun = new RulesRunRequest() }, cancellationToken);
            if (response is null)
            {
                return exitCode;
            }

            var r = response.RulesRun;
            context.Output.WriteLine($"evaluation {r.EvaluationCorrelationId}: {string.Join(", ", r.Tasks.Select(t => $"{t.TaskType} task {t.TaskId}{(t.Partial ? " (partial)" : string.Empty)}"))}; {r.Processes} process(es); {r.AlertsPublished} alert(s) published ({r.PartialAlerts} with partial data, {r.SuppressedAlerts} suppressed as duplicates)");
            if (r.TableChanges.Count > 0)
            {
                var changed = r.TableChanges.Where(t => t.Value.Inserted + t.Value.Updated + t.Value.Deleted > 0).OrderBy(t => t.Key, StringComparer.Ordinal)
                    .Select(t => $"{t.Key} +{t.Value.Inserted} ~{t.Value.Updated} -{t.Value.Deleted}");
                context.Output.WriteLine((r.FullLoad ? "tables loaded in full: " : "tables changed (+inserted ~updated -deleted): ")
                    + (r.FullLoad ? string.Join(", ", r.TableRows.OrderBy(t => t.Key, StringComparer.Ordinal).Select(t => $"{t.Key} {t.Value}")) : string.Join(", ", changed.DefaultIfEmpty("none"))));
            }

            foreach (var outcome in r.Outcomes)
            {
                context.Output.WriteLine(outcome.Error.Length > 0
                    ? $"  {outcome.RuleId}: {outcome.Error}"
                    : $"  {outcome.RuleId}: {outcome.Matches} match(es) in {outcome.EvaluationUs / 1000.0:0.###} ms");
            }

            WriteProblems(context.Error, r.Problems);
            return r.Problems.Count > 0 || r.Outcomes.Any(o => o.Error.Length > 0) ? CliApplication.No : CliApplication.Ok;
        }));
        rules.Subcommands.Add(list);
        rules.Subcommands.Add(test);
        rules.Subcommands.Add(run);
        return rules;
    }

    public static Command BuildAlerts(CliContext context)
    {
        var alerts = new Command("alerts", "Alerts raised by the detection rules");
        var json = new Option<bool>("--json") { Description = "Print one JSON object per alert and line (NDJSON)" };
        var count = new Option<long>("--count") { Description = "Exit after this many alerts (0: run until Ctrl-C)" };
        var last = Retention.AddLastOption();
        var tail = new Command("tail", "Print alerts (events.alert.#) as they are raised (--last N: first the last N the agent retains); ready once 'subscribed to ...' is on stderr");
        tail.Options.Add(json);
        tail.Options.Add(count);
        tail.Options.Add(last);
        tail.SetAction((parse, cancellationToken) => AgentConnection.RunAsync(context, async () =>
        {
            if (Retention.Validate(parse, last, durable: false) is { } lastProblem)
            {
                context.Error.WriteLine($"error: {lastProblem}");
                return CliApplication.Invalid;
            }

            var limit = parse.GetValue(count);
            if (limit < 0)
            {
                context.Error.WriteLine($"--count is {limit}; it must be 0 (no limit) or more");
                return CliApplication.Invalid;
            }

            await using var client = await AgentConnection.ConnectAsync(context, AgentConnection.Options(context, parse), cancellationToken);
            if (client is null)
            {
                return CliApplication.Unavailable;
            }

            client.Dropped += (_, e) => context.Error.WriteLine($"dropped {e.Count} alert message(s) (total {e.Total}): {e.Reason}");
            var subscription = await client.SubscribeAsync(WellKnownTopics.AllAlerts, cancellationToken);
            context.Error.WriteLine($"subscribed to events.alert.# (subscription {subscription.Id})");
            var received = 0L;
            bool Print(DaemonEye.Client.BusMessage message)
            {
                Alert alert;
                try
                {
                    alert = Alert.Parser.ParseFrom(message.Payload.Span);
                }
                catch (InvalidProtocolBufferException e)
                {
                    context.Error.WriteLine($"{message.Topic}: not an Alert ({e.Message})");
                    return false;
                }

                if (parse.GetValue(json))
                {
                    context.Output.WriteLine(AlertJson(alert, message));
                }
                else
                {
                    WriteAlert(context, alert);
                }

                context.Output.Flush();
                return limit > 0 && ++received >= limit;
            }

            var retention = new Retention();
            if (parse.GetValue(last) is { } n)
            {
                // After the live subscription: an alert raised meanwhile comes live, once.
                var (retained, failed) = await retention.FetchAsync(context, parse, WellKnownTopics.AllAlerts, n, cancellationToken);
                if (retained is null)
                {
                    return failed;
                }

                foreach (var message in retained)
                {
                    if (Print(message))
                    {
                        return CliApplication.Ok;
                    }
                }
            }

            await foreach (var message in subscription.ReadAllAsync(cancellationToken))
            {
                if (!retention.IsReplayed(message) && Print(message))
                {
                    break;
                }
            }

            return CliApplication.Ok;
        }));
        alerts.Subcommands.Add(tail);
        return alerts;
    }

    /// <summary>One alert as <c>alerts tail</c> prints it: one line, the severity in its colour on a terminal.</summary>
    internal static void WriteAlert(CliContext context, Alert alert)
    {
        var time = DateTimeOffset.FromUnixTimeMilliseconds((long)alert.RaisedUnixMs).UtcDateTime.ToString("HH:mm:ss.fff", CultureInfo.InvariantCulture);
        var fields = string.Join(' ', alert.Fields.Select(f => $"{f.Name}={(f.IsNull ? "NULL" : f.Value)}"));
        // The chain: evaluation > each task's collector results (or what is missing).
        var chain = string.Join(", ", alert.Sources.Select(x => x.Missing
            ? $"{x.TaskType} {x.TaskId} {x.CollectorType} MISSING"
            : $"{x.TaskType} {x.TaskId} {x.CollectorId}#{x.Sequence}"));
        var severity = $"{alert.Severity.ToUpperInvariant(),-8}";
        context.Output.Write(time + " ");
        context.Console.Write(context.IsTerminal ? Styles.Severity(severity, alert.Severity) : Styles.Text(severity));
        context.Output.WriteLine($" {alert.RuleId} ({alert.RuleName}): {fields}{(alert.PartialSnapshot ? " PARTIAL" : string.Empty)} [task {alert.TaskId}] [chain {alert.EvaluationCorrelationId} > {chain}]");
    }

    /// <summary>One alert as <c>alerts tail --json</c> prints it: the Alert's fields and its message's topic and correlation.</summary>
    internal static string AlertJson(Alert alert, DaemonEye.Client.BusMessage message)
    {
        var node = JsonNode.Parse(ProtoJson.Format(alert))!.AsObject();
        node["topic"] = message.Topic;
        node["correlation_id"] = message.CorrelationId;
        node["parent_correlation_id"] = message.Correlation.ParentCorrelationId;
        return node.ToJsonString(new System.Text.Json.JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
    }

    private static void WriteResult(CliContext context, AggregatedTaskResult result)
    {
        var o = context.Output;
        var state = result.Partial ? "PARTIAL" : "complete";
        context.Console.Write(Styles.Text($"task {result.TaskId} ({result.TaskType}): ", context.IsTerminal ? "bold" : null));
        context.Console.Write(context.IsTerminal ? Styles.Text(state, result.Partial ? "bold red" : "green") : Styles.Text(state));
        o.WriteLine($" in {result.DurationUs / 1000.0:0.###} ms; {result.Results.Count} result(s); expected collector types: {string.Join(", ", result.ExpectedCollectorTypes)}; duplicates removed {result.DuplicatesRemoved}; redistributed {result.Redistributions}");
        foreach (var r in result.Results)
        {
            o.WriteLine($"  {(context.IsTerminal ? "✔ " : string.Empty)}{r.CollectorId} #{r.Sequence} {r.PayloadType} ({r.Payload.Length} bytes): {Summary(r)}");
        }

        foreach (var m in result.Missing)
        {
            o.WriteLine($"  {(context.IsTerminal ? "✘ " : string.Empty)}missing {m.CollectorType}{(m.InstanceId.Length > 0 ? $" (instance {m.InstanceId})" : string.Empty)}: {m.Reason}");
        }
    }

    private static string Summary(TaskResult result)
    {
        try
        {
            return result.PayloadType switch
            {
                "daemoneye.process.v1.ProcessSnapshot" => Snapshot(ProcessSnapshot.Parser.ParseFrom(result.Payload)),
                "google.protobuf.Struct" => Formatter.Format(Struct.Parser.ParseFrom(result.Payload)),
                _ => "base64:" + result.Payload.ToBase64(),
            };
        }
        catch (InvalidProtocolBufferException e)
        {
            return $"does not parse as {result.PayloadType}: {e.Message}";
        }

        static string Snapshot(ProcessSnapshot s) => $"{s.Processes.Count} processes, taken {DateTimeOffset.FromUnixTimeMilliseconds((long)s.TakenUnixMs):O} by {s.CollectorId}";
    }

    private static JsonObject ToJson(AggregatedTaskResult result)
    {
        var node = JsonNode.Parse(ProtoJson.Format(result))!.AsObject();
        if (node["results"] is JsonArray array)
        {
            for (var i = 0; i < array.Count && i < result.Results.Count; i++)
            {
                var r = result.Results[i];
                IMessage? decoded = r.PayloadType switch
                {
                    "daemoneye.process.v1.ProcessSnapshot" => ProcessSnapshot.Parser.ParseFrom(r.Payload),
                    "google.protobuf.Struct" => Struct.Parser.ParseFrom(r.Payload),
                    _ => null,
                };
                if (decoded is not null && array[i] is JsonObject item)
                {
                    item.Remove("payload");
                    item["payload_decoded"] = JsonNode.Parse(ProtoJson.Format(decoded));
                }
            }
        }

        return node;
    }

    internal static Rows RulesView(CliContext context, RulesListResponse r, OutputFormat format)
    {
        var header = Styles.Text($"rules directory {r.Directory}; run every {(r.IntervalSeconds > 0 ? r.IntervalSeconds.ToString("0.###", CultureInfo.InvariantCulture) + " s" : "- (on demand only)")}");
        string[] columns = format == OutputFormat.Wide
            ? ["ID", "KIND", "SEVERITY", "STATE", "TABLES", "NEEDS", "NAME", "FILE", "DESCRIPTION"]
            : ["ID", "KIND", "SEVERITY", "STATE", "TABLES", "NEEDS", "NAME", "FILE"];
        var table = Styles.Table(context.Console, columns);
        foreach (var rule in r.Rules)
        {
            // "waiting for network.snapshot": no running collector offers that task type (e.g. netmond stopped).
            var state = rule.WaitingFor.Count > 0 ? $"{rule.State} for {string.Join(',', rule.WaitingFor)}" : rule.State;
            var cells = new List<IRenderable>
            {
                Styles.Text(rule.Id),
                Styles.Text(rule.Kind.Length == 0 ? "snapshot" : rule.Kind),
                context.IsTerminal ? Styles.Severity(rule.Severity, rule.Severity) : Styles.Text(rule.Severity),
                Styles.Text(state.Length == 0 ? "-" : state),
                Styles.Text(rule.Tables.Count == 0 ? "-" : string.Join(',', rule.Tables)),
                Styles.Text(rule.TaskTypes.Count == 0 ? "-" : string.Join(',', rule.TaskTypes)),
                Styles.Text(rule.Name),
                Styles.Text($"{rule.File}:{rule.Line}"),
            };
            if (format == OutputFormat.Wide)
            {
                cells.Add(Styles.Text(rule.Description));
            }

            table.AddRow(cells);
        }

        if (r.EventRules is not { } events)
        {
            return new Rows(header, table);
        }

        // Event rules run as events arrive, over these windows.
        var summary = Styles.Text(string.Create(CultureInfo.InvariantCulture,
            $"event windows (fed from {string.Join(", ", events.Topics)}; debounce {events.DebounceMs:0.###} ms; de-duplication {events.SuppressionSeconds:0.###} s): " +
            $"{events.MessagesReceived} event(s) in {events.BatchesReceived} batch(es), {events.MessagesDropped} dropped (queue full), {events.MessagesUndecodable} undecodable; " +
            $"{events.Rounds} round(s), {events.Evaluations} evaluation(s), {events.RuleErrors} failed; {events.AlertsPublished} alert(s) published, {events.AlertsSuppressed} suppressed, {events.RowsRematched} row(s) already raised"));
        var windows = Styles.Table(context.Console, ["TABLE", "ROWS", "MAX AGE", "MAX ROWS", "APPENDED", "AGED OUT", "OVERFLOWED"]);
        foreach (var w in events.Windows)
        {
            windows.AddRow(
                Styles.Text(w.Table),
                Styles.Text(w.Rows.ToString(CultureInfo.InvariantCulture)),
                Styles.Text(w.MaxAgeSeconds.ToString("0.###", CultureInfo.InvariantCulture) + " s"),
                Styles.Text(w.MaxRows.ToString(CultureInfo.InvariantCulture)),
                Styles.Text(w.Appended.ToString(CultureInfo.InvariantCulture)),
                Styles.Text(w.AgedOut.ToString(CultureInfo.InvariantCulture)),
                Styles.Text(w.Overflowed.ToString(CultureInfo.InvariantCulture)));
        }

        return new Rows(header, table, summary, windows);
    }

    private static void WriteProblems(TextWriter error, IEnumerable<RuleProblem> problems)
    {
        foreach (var p in problems)
        {
            error.WriteLine($"{p.File}{(p.Line > 0 ? ":" + p.Line.ToString(CultureInfo.InvariantCulture) : string.Empty)}: {(p.RuleId.Length > 0 ? $"rule '{p.RuleId}': " : string.Empty)}{p.Message}");
        }
    }

    private static void WriteTable(TextWriter o, IReadOnlyList<string> columns, List<string[]> rows)
    {
        var widths = columns.Select((c, i) => Math.Min(60, Math.Max(c.Length, rows.Count == 0 ? 0 : rows.Max(r => r[i].Length)))).ToArray();
        o.WriteLine(string.Join("  ", columns.Select((c, i) => c.PadRight(widths[i]))));
        foreach (var row in rows)
        {
            o.WriteLine(string.Join("  ", row.Select((v, i) => (v.Length > 60 ? v[..57] + "..." : v).PadRight(widths[i]))));
        }
    }
}
