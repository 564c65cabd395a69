using System.CommandLine;
using System.Globalization;
using DaemonEye.Client;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.Task.V1;
using DaemonEye.Topics;
using Spectre.Console;

namespace DaemonEye.Cli.Commands;

/// <summary>
/// <c>task run</c> while it waits: which collector instances the task went to and which have
/// answered, as they answer. The agent answers the task with one IPC response when every collector
/// type has answered or the timeout has passed; meanwhile it publishes the task's events on
/// <c>control.collector.task</c> (<see cref="TaskEvent"/>: announced, assigned, answered, attempt
/// failed). Before sending the request the CLI subscribes there and gives the request a correlation id
/// of its own; the task's correlation is a child of it, so its events are the ones whose parent
/// correlation id is that id. A spinner with the state on a terminal; on a pipe, once the wait has
/// passed a second, a line on stderr per event (those of the first second then at once). Without the
/// bus (it cannot be reached, or the CLI's user may not subscribe) the wait shows only the time.
/// </summary>
internal static class TaskProgress
{
    private static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan QuietFor = TimeSpan.FromSeconds(1);

    public static async Task<(IpcResponse? Response, int ExitCode)> RunAsync(CliContext context, ParseResult parse, TaskRunRequest request, CancellationToken cancellationToken)
    {
        var correlation = CollectorCommands.NewCorrelation();
        var (client, events) = await WatchAsync(context, parse, cancellationToken);
        try
        {
            var state = new TaskWait(request.TaskType, correlation.CorrelationId);
            var started = context.Clock.GetTimestamp();
            var call = CollectorCommands.RequestAsync(context, parse, new IpcRequest { TaskRun = request, Correlation = correlation }, cancellationToken);
            var reader = new EventReader(events);
            if (context.IsTerminal)
            {
                await context.Console.Status().Spinner(Spinner.Known.Dots).StartAsync(Markup.Escape(state.Summary(TimeSpan.Zero)), async status =>
                {
                    while (!call.IsCompleted)
                    {
                        await reader.WaitAsync(call, context.Clock, Tick, cancellationToken);
                        foreach (var line in reader.Take(state))
                        {
                            if (context.Clock.GetElapsedTime(started) >= QuietFor)
                            {
                                context.Console.MarkupLine(Markup.Escape(line));
                            }
                        }

                        status.Status(Markup.Escape(state.Summary(context.Clock.GetElapsedTime(started))));
                    }
                });
            }
            else
            {
                var held = new List<string>();
                while (!call.IsCompleted)
                {
                    await reader.WaitAsync(call, context.Clock, Tick, cancellationToken);
                    held.AddRange(reader.Take(state));
                    if (!call.IsCompleted && context.Clock.GetElapsedTime(started) >= QuietFor)
                    {
                        foreach (var line in held)
                        {
                            context.Error.WriteLine(line);
                        }

                        held.Clear();
                    }
                }
            }

            return await call;
        }
        finally
        {
            if (client is not null)
            {
                await client.DisposeAsync();
            }
        }
    }

    /// <summary>A bus connection subscribed to the task events; (null, null) when the bus cannot be used (nothing printed: the IPC request reports an unreachable agent).</summary>
    private static async Task<(BusClient? Client, BusSubscription? Events)> WatchAsync(CliContext context, ParseResult parse, CancellationToken cancellationToken)
    {
        var options = AgentConnection.Options(context, parse, "-task");
        options.AutoReconnect = false;
        options.DisposeTimeout = TimeSpan.FromSeconds(1);
        BusClient? client = null;
        try
        {
            client = await BusClient.ConnectAsync(options, cancellationToken);
            return (client, await client.SubscribeAsync(WellKnownTopics.CollectorTask, cancellationToken));
        }
        catch (Exception e) when (e is BusException or FileNotFoundException or TopicFormatException)
        {
            if (client is not null)
            {
                await client.DisposeAsync();
            }

            return (null, null);
        }
    }

    /// <summary>Reads the task events as they come, alongside the IPC call.</summary>
    private sealed class EventReader(BusSubscription? events)
    {
        private static readonly Task Never = new TaskCompletionSource().Task;

        private BusSubscription? _events = events;
        private Task<bool>? _next;

        /// <summary>Waits for the call to end, an event, or a tick (the time shown moves on).</summary>
        public async Task WaitAsync(Task call, TimeProvider clock, TimeSpan tick, CancellationToken cancellationToken)
        {
            if (_events is not null)
            {
                _next ??= _events.Reader.WaitToReadAsync(cancellationToken).AsTask();
            }

            await Task.WhenAny(call, _next ?? Never, Task.Delay(tick, clock, cancellationToken));
            if (_next is { IsCompleted: true } next)
            {
                _next = null;
                if (!next.IsCompletedSuccessfully || !next.Result)
                {
                    _events = null; // the bus connection ended: the wait goes on without events
                }
            }
        }

        /// <summary>The lines of the events that arrived, applied to <paramref name="state"/>.</summary>
        public IEnumerable<string> Take(TaskWait state)
        {
            var lines = new List<string>();
            while (_events is not null && _events.Reader.TryRead(out var message))
            {
                TaskEvent e;
                try
                {
                    e = TaskEvent.Parser.ParseFrom(message.Payload.Span);
                }
                catch (Google.Protobuf.InvalidProtocolBufferException)
                {
                    continue; // not a task event: someone else's publish on the topic
                }

                if (state.Apply(e) is { } line)
                {
                    lines.Add(line);
                }
            }

            return lines;
        }
    }
}

/// <summary>What is known of one task while <c>task run</c> waits: the collector types it went to, the instances assigned and which answered.</summary>
internal sealed class TaskWait(string taskType, string parentCorrelationId)
{
    private readonly List<string> _types = [];
    private readonly Dictionary<string, string> _instances = new(StringComparer.Ordinal); // instance -> state
    private string? _taskId;

    /// <summary>Applies an event of this task (others are ignored) and returns its line, or null.</summary>
    public string? Apply(TaskEvent e)
    {
        if (e.ParentCorrelationId != parentCorrelationId)
        {
            return null;
        }

        _taskId ??= e.TaskId;
        var prefix = $"task {taskType} {e.TaskId}:";
        var at = FormattableString.Invariant($"{e.ElapsedUs / 1000.0:0.0} ms");
        switch (e.Kind)
        {
            case TaskEventKind.Announced:
                _types.Clear();
                _types.AddRange(e.CollectorTypes);
                return $"{prefix} announced for collector type(s) {(e.CollectorTypes.Count == 0 ? "(none offers it yet)" : string.Join(", ", e.CollectorTypes))}";
            case TaskEventKind.Assigned:
                _instances[e.InstanceId] = "waiting";
                return $"{prefix} assigned to {e.InstanceId} ({e.CollectorType}){(e.Attempt > 1 ? $", attempt {e.Attempt}" : string.Empty)}";
            case TaskEventKind.Answered:
                _instances[e.InstanceId] = $"answered in {at}";
                return $"{prefix} {e.InstanceId} ({e.CollectorType}) answered after {at}: {e.Result?.PayloadType}, {e.Result?.PayloadBytes.ToString(CultureInfo.InvariantCulture)} bytes";
            case TaskEventKind.AttemptFailed:
                _instances[e.InstanceId] = "failed";
                return $"{prefix} {e.InstanceId} ({e.CollectorType}) failed after {at}: {e.Failure}";
            default:
                return null; // COMPLETED and FAILED: the IPC answer says it all
        }
    }

    /// <summary>The one-line state for the spinner.</summary>
    public string Summary(TimeSpan elapsed)
    {
        var seconds = elapsed.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture);
        if (_taskId is null)
        {
            return $"task {taskType}: submitted; {seconds} s";
        }

        var answered = _instances.Where(i => i.Value.StartsWith("answered", StringComparison.Ordinal)).Select(i => i.Key).Order(StringComparer.Ordinal).ToList();
        var waiting = _instances.Where(i => i.Value == "waiting").Select(i => i.Key).Order(StringComparer.Ordinal).ToList();
        var types = _types.Count == 0 ? "?" : _types.Count.ToString(CultureInfo.InvariantCulture);
        return $"task {taskType} {_taskId}: {answered.Count} of {types} collector type(s) answered{(answered.Count > 0 ? $" ({string.Join(", ", answered)})" : string.Empty)}{(waiting.Count > 0 ? $"; waiting for {string.Join(", ", waiting)}" : string.Empty)}; {seconds} s";
    }
}
