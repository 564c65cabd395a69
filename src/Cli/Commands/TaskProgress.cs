using System.CommandLine;
using System.Globalization;
using DaemonEye.Protocol.Ipc.V1;
using Spectre.Console;

namespace DaemonEye.Cli.Commands;

/// <summary>
/// <c>task run</c> while it waits: which collectors are expected to answer (those that declared
/// <c>task:&lt;type&gt;</c>), how many execute_task answers the agent has received since the task
/// started (its <c>daemoneye.rpc.responses</c> counter), and the time waited. A spinner on a
/// terminal; on a pipe, once the wait has passed a second, a line on stderr then and at each change
/// (an answer or a refusal that comes at once prints nothing else). The agent answers the task with one IPC
/// response, so the names of the collectors that answered are known when it returns.
/// </summary>
internal static class TaskProgress
{
    private static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(250);
    private static readonly TimeSpan QuietFor = TimeSpan.FromSeconds(1);

    public static async Task<(IpcResponse? Response, int ExitCode)> RunAsync(CliContext context, ParseResult parse, TaskRunRequest request, CancellationToken cancellationToken)
    {
        var expected = await ExpectedAsync(context, parse, request.TaskType, cancellationToken);
        var baseline = await AnsweredAsync(context, parse, cancellationToken);
        var started = context.Clock.GetTimestamp();
        var call = CollectorCommands.RequestAsync(context, parse, new IpcRequest { TaskRun = request }, cancellationToken);

        string Describe(ulong answered) =>
            $"task {request.TaskType}: waiting for {(expected.Count == 0 ? "collectors" : string.Join(", ", expected))}; {answered} of {(expected.Count == 0 ? "?" : expected.Count.ToString(CultureInfo.InvariantCulture))} answered; {context.Clock.GetElapsedTime(started).TotalSeconds:0.0} s";

        if (context.IsTerminal)
        {
            await context.Console.Status().Spinner(Spinner.Known.Dots).StartAsync(Describe(0), async status =>
            {
                while (!call.IsCompleted)
                {
                    await Task.WhenAny(call, Task.Delay(Poll, context.Clock, cancellationToken));
                    status.Status(Markup.Escape(Describe(await AnsweredAsync(context, parse, cancellationToken) - baseline)));
                }
            });
        }
        else
        {
            var reported = ulong.MaxValue;
            while (!call.IsCompleted)
            {
                await Task.WhenAny(call, Task.Delay(Poll, context.Clock, cancellationToken));
                if (call.IsCompleted || context.Clock.GetElapsedTime(started) < QuietFor)
                {
                    continue;
                }

                var answered = await AnsweredAsync(context, parse, cancellationToken) - baseline;
                if (answered != reported && !call.IsCompleted)
                {
                    reported = answered;
                    context.Error.WriteLine(Describe(answered));
                }
            }
        }

        return await call;
    }

    /// <summary>The collectors that declared the task type, by id; empty when they cannot be listed.</summary>
    private static async Task<List<string>> ExpectedAsync(CliContext context, ParseResult parse, string taskType, CancellationToken cancellationToken)
    {
        var response = await Quietly(context, parse, new IpcRequest { ListCollectors = new ListCollectorsRequest() }, cancellationToken);
        return response?.ListCollectors?.Collectors.Where(c => c.Capabilities.Contains($"task:{taskType}")).Select(c => c.Id).ToList() ?? [];
    }

    /// <summary>execute_task responses the agent has routed since it started (0 when it cannot say).</summary>
    private static async Task<ulong> AnsweredAsync(CliContext context, ParseResult parse, CancellationToken cancellationToken)
    {
        var response = await Quietly(context, parse, new IpcRequest { Metrics = new MetricsRequest() }, cancellationToken);
        var metric = response?.Metrics?.Metrics.FirstOrDefault(m => m.Name == "daemoneye.rpc.responses");
        return metric is null
            ? 0
            : (ulong)metric.Points.Where(p => p.Tags.TryGetValue("rpc.operation", out var op) && op == "execute_task").Sum(p => p.Value);
    }

    /// <summary>A side request for the progress display: its failures are not the command's, so nothing is printed.</summary>
    private static async Task<IpcResponse?> Quietly(CliContext context, ParseResult parse, IpcRequest request, CancellationToken cancellationToken)
    {
        var silent = context with { Error = TextWriter.Null };
        var (response, _) = await CollectorCommands.RequestAsync(silent, parse, request, cancellationToken);
        return response;
    }
}
