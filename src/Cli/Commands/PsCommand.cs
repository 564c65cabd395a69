using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using DaemonEye.Cli.Output;
using DaemonEye.Client;
using DaemonEye.Protocol.Process.V1;
using DaemonEye.Protocol.Task.V1;
using DaemonEye.Protocol.V1;
using Google.Protobuf;
using Spectre.Console;

namespace DaemonEye.Cli.Commands;

/// <summary><c>ps</c>: procmond's latest process snapshot, through the process.snapshot task over the bus.</summary>
internal static class PsCommand
{
    public const string SnapshotTaskType = "process.snapshot";
    private static readonly JsonWriterOptions JsonOptions = new() { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static Command Build(CliContext context)
    {
        var collector = new Option<string>("--collector") { Description = "The process collector to ask", DefaultValueFactory = _ => "procmond" };
        var tree = new Option<bool>("--tree") { Description = "Show the processes as a tree by parent (ppid); JSON: each process with a children array" };
        var fresh = new Option<bool>("--fresh") { Description = "Ask for a new scan instead of the last one" };
        var timeout = new Option<double>("--timeout") { Description = "Seconds to wait for the answer", DefaultValueFactory = _ => 10 };
        var command = new Command("ps", "Print the latest process snapshot of procmond: pid, ppid, user, name, cpu, rss, executable hash prefix");
        command.Options.Add(collector);
        var output = OutputOptions.AddTo(command, "an array of processes");
        command.Options.Add(tree);
        command.Options.Add(fresh);
        command.Options.Add(timeout);
        var watch = WatchOptions.AddTo(command);
        command.SetAction((parse, cancellationToken) => AgentConnection.RunAsync(context, async () =>
        {
            var seconds = parse.GetValue(timeout);
            if (!(seconds > 0 && seconds <= 3600))
            {
                context.Error.WriteLine($"--timeout is {seconds.ToString(CultureInfo.InvariantCulture)}; allowed: more than 0 and at most 3600 seconds");
                return CliApplication.Invalid;
            }

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
            var asTree = parse.GetValue(tree);
            async Task<Sample> TakeAsync(CancellationToken token)
            {
                var snapshot = await SnapshotAsync(context, client, parse.GetValue(collector)!, parse.GetValue(fresh), seconds, token);
                if (snapshot is null)
                {
                    return Sample.Failed(CliApplication.No);
                }

                if (format == OutputFormat.Json)
                {
                    context.Output.Write(asTree ? ProcessTree.ToJson(snapshot) : ToJson(snapshot));
                    context.Output.Flush();
                    return new Sample(Spectre.Console.Text.Empty, CliApplication.Ok);
                }

                return new Sample(asTree ? ProcessTree.Render(context.Console, snapshot) : Table(context, snapshot, format), CliApplication.Ok);
            }

            if (watch.IsWatching(parse))
            {
                return await watch.RunAsync(context.Console, parse, "ps", TakeAsync, cancellationToken, inPlace: format != OutputFormat.Json);
            }

            var sample = await TakeAsync(cancellationToken);
            if (sample.View is not null)
            {
                context.Console.Show(sample.View);
            }

            return sample.ExitCode;
        }));
        return command;
    }

    /// <summary>procmond's snapshot over the bus, or null with the reason on stderr.</summary>
    private static async Task<ProcessSnapshot?> SnapshotAsync(CliContext context, BusClient client, string collector, bool fresh, double seconds, CancellationToken cancellationToken)
    {
        var task = new TaskRequest { TaskId = Guid.NewGuid().ToString("N"), TaskType = SnapshotTaskType };
        task.Parameters["publish"] = "false";
        if (fresh)
        {
            task.Parameters["fresh"] = "true";
        }

        var response = await client.CallAsync(collector, RpcOperation.ExecuteTask, task.ToByteString(), TimeSpan.FromSeconds(seconds), cancellationToken: cancellationToken);
        if (response.Status != RpcStatus.Ok)
        {
            context.Error.WriteLine($"{CollectorCommands.KindName(response.Error?.Kind ?? RpcErrorKind.Unspecified)}: {response.Error?.Message}");
            return null;
        }

        var result = TaskResult.Parser.ParseFrom(response.Payload);
        if (result.PayloadType != ProcessSnapshot.Descriptor.FullName)
        {
            context.Error.WriteLine($"Error: the task result holds a '{result.PayloadType}', not a {ProcessSnapshot.Descriptor.FullName}");
            return null;
        }

        return ProcessSnapshot.Parser.ParseFrom(result.Payload);
    }

    /// <summary>PID, PPID, USER, NAME, CPU%, RSS, EXE-SHA256 (wide: the whole hash, threads, started, command line).</summary>
    internal static Spectre.Console.Table Table(CliContext context, ProcessSnapshot snapshot, OutputFormat format)
    {
        var wide = format == OutputFormat.Wide;
        var table = wide
            ? Styles.Table(context.Console, "PID>", "PPID>", "USER", "NAME", "CPU%>", "RSS>", "THREADS>", "STARTED", "EXE-SHA256", "COMMAND")
            : Styles.Table(context.Console, "PID>", "PPID>", "USER", "NAME", "CPU%>", "RSS>", "EXE-SHA256");
        var now = context.Clock.GetUtcNow();
        foreach (var p in snapshot.Processes)
        {
            var cells = new List<Spectre.Console.Rendering.IRenderable>
            {
                Styles.Text(p.Pid.ToString(CultureInfo.InvariantCulture)),
                Styles.Text(p.Ppid.ToString(CultureInfo.InvariantCulture)),
                Styles.Text(p.User.Length > 0 ? p.User : p.Uid.ToString(CultureInfo.InvariantCulture)),
                Styles.Text(p.Name, context.IsTerminal && p.ExeDeleted ? "bold red" : null),
                Styles.Text(p.CpuPercent.ToString("0.0", CultureInfo.InvariantCulture), context.IsTerminal && p.CpuPercent >= 50 ? "yellow" : null),
                Styles.Text(Size(p.RssBytes)),
            };
            if (wide)
            {
                cells.Add(Styles.Text(p.Threads.ToString(CultureInfo.InvariantCulture)));
                cells.Add(Styles.Text(Styles.Time(context.Console, p.StartTimeUnixMs == 0 ? null : DateTimeOffset.FromUnixTimeMilliseconds((long)p.StartTimeUnixMs), now, absolute: true)));
                cells.Add(Styles.Text(p.ExeSha256.Length > 0 ? p.ExeSha256 : "-"));
                cells.Add(Styles.Text(string.Join(' ', p.CommandLine)));
            }
            else
            {
                cells.Add(Styles.Text(p.ExeSha256.Length >= 12 ? p.ExeSha256[..12] : "-"));
            }

            table.AddRow(cells);
        }

        return table;
    }

    internal static string Size(ulong bytes) => bytes switch
    {
        >= 1UL << 30 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1UL << 30):0.0}G"),
        >= 1UL << 20 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1UL << 20):0.0}M"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1024}K"),
    };

    internal static string ToJson(ProcessSnapshot snapshot)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, JsonOptions))
        {
            w.WriteStartArray();
            foreach (var p in snapshot.Processes)
            {
                w.WriteStartObject();
                WriteProcessFields(w, p);
                w.WriteEndObject();
            }

            w.WriteEndArray();
        }

        return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length) + "\n";
    }

    /// <summary>One process's fields, as <c>ps --json</c> writes them.</summary>
    internal static void WriteProcessFields(Utf8JsonWriter w, ProcessInfo p)
    {
        w.WriteNumber("pid", p.Pid);
        w.WriteNumber("ppid", p.Ppid);
        w.WriteNumber("uid", p.Uid);
        w.WriteString("user", p.User);
        w.WriteString("name", p.Name);
        w.WriteString("comm", p.Comm);
        w.WriteNumber("cpu_percent", p.CpuPercent);
        w.WriteNumber("rss_bytes", p.RssBytes);
        w.WriteNumber("threads", p.Threads);
        w.WriteString("executable", p.Executable);
        w.WriteBoolean("exe_deleted", p.ExeDeleted);
        w.WriteString("exe_sha256", p.ExeSha256);
        w.WriteNumber("start_time_unix_ms", p.StartTimeUnixMs);
        w.WriteStartArray("command_line");
        foreach (var arg in p.CommandLine)
        {
            w.WriteStringValue(arg);
        }

        w.WriteEndArray();
    }
}
