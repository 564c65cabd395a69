using System.CommandLine;
using DaemonEye.Cli.Output;
using DaemonEye.Protocol.Ipc.V1;
using Spectre.Console;

namespace DaemonEye.Cli.Commands;

/// <summary>
/// <c>logs &lt;collector&gt;</c>: the last lines a collector wrote to stdout and stderr, from the
/// supervisor's ring (<c>collector_logs</c>, IPC 20; operator only). <c>--follow</c> asks again
/// every second and prints the lines that are new.
/// </summary>
internal static class LogsCommand
{
    public static Command Build(CliContext context)
    {
        var id = new Argument<string>("collector") { Description = "The collector id" };
        var lines = new Option<uint>("--lines", "-n") { Description = "At most this many recent lines (0: all the agent keeps)", DefaultValueFactory = _ => 100 };
        var follow = new Option<bool>("--follow", "-f") { Description = "Keep printing new lines until Ctrl-C" };
        var command = new Command("logs", "A collector's recent stdout and stderr lines, as the agent keeps them (the last 500 per collector, across restarts)");
        command.Arguments.Add(id);
        command.Options.Add(lines);
        command.Options.Add(follow);
        var output = OutputOptions.AddTo(command, "one object: id, capacity, discarded, lines");
        command.SetAction((parse, cancellationToken) => AgentConnection.RunAsync(context, async () =>
        {
            var request = new IpcRequest { CollectorLogs = new CollectorLogsRequest { Id = parse.GetValue(id)!, MaxLines = parse.GetValue(lines) } };
            var (response, code) = await CollectorCommands.RequestAsync(context, parse, request, cancellationToken);
            if (response is null)
            {
                return code;
            }

            var logs = response.CollectorLogs;
            if (output.Get(parse) == OutputFormat.Json)
            {
                context.Output.WriteLine(ProtoJson.Format(logs, indented: true));
                return CliApplication.Ok;
            }

            Write(context, logs.Lines);
            var seen = logs.Discarded + (ulong)logs.Lines.Count;
            if (!parse.GetValue(follow))
            {
                return CliApplication.Ok;
            }

            using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1));
            request.CollectorLogs.MaxLines = 0;
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                (response, code) = await CollectorCommands.RequestAsync(context, parse, request.Clone(), cancellationToken);
                if (response is null)
                {
                    return code;
                }

                // Lines since the last answer: the ring's total grew by that many (all of the ring if more).
                var now = response.CollectorLogs;
                var total = now.Discarded + (ulong)now.Lines.Count;
                Write(context, now.Lines.Skip(now.Lines.Count - (int)Math.Min((ulong)now.Lines.Count, total - Math.Min(total, seen))));
                seen = total;
            }

            return CliApplication.Ok;
        }));
        return command;
    }

    private static void Write(CliContext context, IEnumerable<CollectorLogLine> lines)
    {
        foreach (var line in lines)
        {
            var time = UnixTime.FromNanos(line.TimeUnixNanos);
            if (context.IsTerminal)
            {
                context.Console.MarkupLine($"[grey]{time.ToLocalTime():HH:mm:ss.fff}[/] {(line.Stream == "stderr" ? "[red]stderr[/]" : "[blue]stdout[/]")} {Markup.Escape(line.Text)}");
            }
            else
            {
                context.Output.WriteLine($"{ProtoJson.Iso(time)} {line.Stream} {line.Text}");
            }
        }

        context.Output.Flush();
    }
}
