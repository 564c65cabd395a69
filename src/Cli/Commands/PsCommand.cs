using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using DaemonEye.Protocol.Process.V1;
using DaemonEye.Protocol.Task.V1;
using DaemonEye.Protocol.V1;
using Google.Protobuf;

namespace DaemonEye.Cli.Commands;

/// <summary><c>ps</c>: procmond's latest process snapshot, through the process.snapshot task over the bus.</summary>
internal static class PsCommand
{
    public const string SnapshotTaskType = "process.snapshot";
    private static readonly JsonWriterOptions JsonOptions = new() { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static Command Build(CliContext context)
    {
        var collector = new Option<string>("--collector") { Description = "The process collector to ask", DefaultValueFactory = _ => "procmond" };
        var json = new Option<bool>("--json") { Description = "Print a JSON array of processes" };
        var fresh = new Option<bool>("--fresh") { Description = "Ask for a new scan instead of the last one" };
        var timeout = new Option<double>("--timeout") { Description = "Seconds to wait for the answer", DefaultValueFactory = _ => 10 };
        var command = new Command("ps", "Print the latest process snapshot of procmond: pid, ppid, user, name, cpu, rss, executable hash prefix");
        command.Options.Add(collector);
        command.Options.Add(json);
        command.Options.Add(fresh);
        command.Options.Add(timeout);
        command.SetAction((parse, cancellationToken) => AgentConnection.RunAsync(context, async () =>
        {
            var seconds = parse.GetValue(timeout);
            if (!(seconds > 0 && seconds <= 3600))
            {
                context.Error.WriteLine($"--timeout is {seconds.ToString(CultureInfo.InvariantCulture)}; allowed: more than 0 and at most 3600 seconds");
                return CliApplication.Invalid;
            }

            await using var client = await AgentConnection.ConnectAsync(context, AgentConnection.Options(context, parse), cancellationToken);
            if (client is null)
            {
                return CliApplication.Unavailable;
            }

            var task = new TaskRequest { TaskId = Guid.NewGuid().ToString("N"), TaskType = SnapshotTaskType };
            task.Parameters["publish"] = "false";
            if (parse.GetValue(fresh))
            {
                task.Parameters["fresh"] = "true";
            }

            var response = await client.CallAsync(parse.GetValue(collector)!, RpcOperation.ExecuteTask, task.ToByteString(), TimeSpan.FromSeconds(seconds), cancellationToken: cancellationToken);
            if (response.Status != RpcStatus.Ok)
            {
                context.Error.WriteLine($"{CollectorCommands.KindName(response.Error?.Kind ?? RpcErrorKind.Unspecified)}: {response.Error?.Message}");
                return CliApplication.No;
            }

            var result = TaskResult.Parser.ParseFrom(response.Payload);
            if (result.PayloadType != ProcessSnapshot.Descriptor.FullName)
            {
                context.Error.WriteLine($"Error: the task result holds a '{result.PayloadType}', not a {ProcessSnapshot.Descriptor.FullName}");
                return CliApplication.No;
            }

            var snapshot = ProcessSnapshot.Parser.ParseFrom(result.Payload);
            context.Output.Write(parse.GetValue(json) ? ToJson(snapshot) : ToTable(snapshot));
            return CliApplication.Ok;
        }));
        return command;
    }

    internal static string ToTable(ProcessSnapshot snapshot)
    {
        var rows = new List<string[]> { new[] { "PID", "PPID", "USER", "NAME", "CPU%", "RSS", "EXE-SHA256" } };
        rows.AddRange(snapshot.Processes.Select(p => new[]
        {
            p.Pid.ToString(CultureInfo.InvariantCulture),
            p.Ppid.ToString(CultureInfo.InvariantCulture),
            p.User.Length > 0 ? p.User : p.Uid.ToString(CultureInfo.InvariantCulture),
            p.Name,
            p.CpuPercent.ToString("0.0", CultureInfo.InvariantCulture),
            Size(p.RssBytes),
            p.ExeSha256.Length >= 12 ? p.ExeSha256[..12] : "-",
        }));
        var widths = Enumerable.Range(0, rows[0].Length).Select(i => rows.Max(r => r[i].Length)).ToArray();
        var text = new StringBuilder();
        foreach (var row in rows)
        {
            for (var i = 0; i < row.Length; i++)
            {
                var right = i is 0 or 1 or 4 or 5;
                text.Append(right ? row[i].PadLeft(widths[i]) : row[i].PadRight(widths[i]));
                text.Append(i == row.Length - 1 ? "\n" : "  ");
            }
        }

        return text.ToString();
    }

    private static string Size(ulong bytes) => bytes switch
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
                w.WriteEndObject();
            }

            w.WriteEndArray();
        }

        return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length) + "\n";
    }
}
