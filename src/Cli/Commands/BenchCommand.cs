using System.CommandLine;
using System.Diagnostics;
using System.Security.Cryptography;
using DaemonEye.Client;

namespace DaemonEye.Cli.Commands;

/// <summary>
/// <c>bench pubsub</c>: publishers and subscribers in this process, through the running agent, like
/// <c>nats bench</c>. Each payload starts with the message's <em>scheduled</em> send time (a
/// Stopwatch timestamp), so the subscriber measures latency from when the message should have left,
/// not from when a late publisher got round to it (no coordinated omission). The run ends
/// deterministically: publishers flush (Ping barrier), then every subscriber has delivered +
/// dropped = messages.
/// </summary>
internal static partial class BenchCommand
{
    public static Command Build(CliContext context)
    {
        var bench = new Command("bench", "Measure the running agent");
        bench.Subcommands.Add(BuildPubSub(context));
        bench.Subcommands.Add(BenchRpcCommand.Build(context));
        bench.Subcommands.Add(BenchTasksCommand.Build(context));
        foreach (var collector in BenchCollectorCommand.Build(context))
        {
            bench.Subcommands.Add(collector);
        }

        bench.Subcommands.Add(BenchEventRulesCommand.Build(context));
        return bench;
    }

    private static Command BuildPubSub(CliContext context)
    {
        var publishers = new Option<int>("--publishers") { Description = "Publishing connections", DefaultValueFactory = _ => 1 };
        var subscribers = new Option<int>("--subscribers") { Description = "Subscribing connections; each receives every message", DefaultValueFactory = _ => 1 };
        var messages = new Option<long>("--messages") { Description = "Messages to publish in all", DefaultValueFactory = _ => 1_000_000 };
        var size = new Option<int>("--size") { Description = "Payload bytes (at least 8: the timestamp)", DefaultValueFactory = _ => 64 };
        var rate = new Option<long>("--rate") { Description = "Offered rate in msgs/s over all publishers, each message on its own schedule; 0 = as fast as possible", DefaultValueFactory = _ => 0 };
        var warmup = new Option<long>("--warmup") { Description = "Messages at the start not recorded in the latency figures (they are counted as delivered or dropped)", DefaultValueFactory = _ => 0 };
        var receive = new Option<string>("--receive")
        {
            Description = "How subscribers take messages: 'handler' (a BusMessageHandler on the client's reader: no copy, no hand-off) or 'channel' (the buffered BusSubscription.Reader)",
            DefaultValueFactory = _ => "handler",
        };
        receive.AcceptOnlyFromAmong("handler", "channel");
        var completions = new Option<string>("--completions")
        {
            Description = "Where socket reads complete: 'inline' (on this process's socket thread: with --receive handler, no thread hand-off at all) or 'thread-pool' (the SDK's default)",
            DefaultValueFactory = _ => "inline",
        };
        completions.AcceptOnlyFromAmong("inline", "thread-pool");
        var busyPoll = new Option<int>("--busy-poll-us")
        {
            Description = $"After each bus event, keep this process's socket thread polling this many microseconds before it sleeps (0 to {(int)Networking.SocketReactor.MaxBusyPoll.TotalMicroseconds}; 0: off)",
            DefaultValueFactory = _ => 0,
        };
        var json = new Option<bool>("--json") { Description = "Print one JSON object with the results" };
        var timeout = new Option<double>("--idle-timeout") { Description = "Give up when subscribers make no progress for this many seconds after the publishers' flush", DefaultValueFactory = _ => 10 };
        var command = new Command("pubsub", "Publish to one topic and measure offered and delivered rates, drops and latency from each message's scheduled send time");
        foreach (var option in new Option[] { publishers, subscribers, messages, size, rate, warmup, receive, completions, busyPoll, json, timeout })
        {
            command.Options.Add(option);
        }

        command.SetAction((parse, cancellationToken) => AgentConnection.RunAsync(context, async () =>
        {
            var settings = new BenchSettings(parse.GetValue(publishers), parse.GetValue(subscribers), parse.GetValue(messages), parse.GetValue(size), parse.GetValue(rate),
                TimeSpan.FromSeconds(parse.GetValue(timeout)), parse.GetValue(warmup), Handler: parse.GetValue(receive) == "handler",
                InlineCompletions: parse.GetValue(completions) == "inline", BusyPollMicroseconds: parse.GetValue(busyPoll));
            var problems = settings.Validate().ToList();
            if (problems.Count > 0)
            {
                foreach (var problem in problems)
                {
                    context.Error.WriteLine($"error: {problem}");
                }

                return CliApplication.Invalid;
            }

            if (settings.InlineCompletions)
            {
                // Before this process's first socket (see bench rpc): the subscribers' reads, and with
                // --receive handler the recording too, then run on the socket event thread.
                CollectorRuntime.UseInlineSocketCompletions();
            }

            Networking.SocketReactor.Shared.BusyPoll = TimeSpan.FromMicroseconds(settings.BusyPollMicroseconds);
            var progress = new BenchProgress();
            var result = await progress.ShowAsync(context, "messages delivered or dropped", settings.Messages * settings.Subscribers, null, RunAsync(context, parse, settings, progress, cancellationToken));
            if (result is null)
            {
                return CliApplication.Unavailable;
            }

            if (parse.GetValue(json))
            {
                context.Output.WriteLine(result.ToJson());
            }
            else
            {
                result.Print(context.Output);
            }

            if (!result.Complete)
            {
                context.Error.WriteLine($"error: incomplete run: delivered {result.Delivered} + dropped {result.Dropped} != expected {result.Expected}");
                return CliApplication.No;
            }

            return CliApplication.Ok;
        }));
        return command;
    }

    private static async Task<BenchResult?> RunAsync(CliContext context, ParseResult parse, BenchSettings settings, BenchProgress progress, CancellationToken cancellationToken)
    {
        var topic = $"events.bench.run-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4))}";
        var clients = new List<BusClient>();
        try
        {
            var schedule = new Schedule(settings);
            var subscribers = new List<BenchSubscriber>();
            for (var i = 0; i < settings.Subscribers; i++)
            {
                var client = await AgentConnection.ConnectAsync(context, AgentConnection.Options(context, parse, $"-sub{i}"), cancellationToken);
                if (client is null)
                {
                    return null;
                }

                clients.Add(client);
                subscribers.Add(await BenchSubscriber.SubscribeAsync(client, topic, settings, schedule, cancellationToken));
            }

            var publisherClients = new List<BusClient>();
            for (var i = 0; i < settings.Publishers; i++)
            {
                var client = await AgentConnection.ConnectAsync(context, AgentConnection.Options(context, parse, $"-pub{i}"), cancellationToken);
                if (client is null)
                {
                    return null;
                }

                clients.Add(client);
                publisherClients.Add(client);
            }

            progress.Done = () => subscribers.Sum(s => s.Progress);
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            // The schedule starts a little ahead, so that every publisher thread is running by then.
            schedule.Start(Stopwatch.GetTimestamp() + (Stopwatch.Frequency / 100));
            var consumers = subscribers.Select(s => s.StartConsuming(stop.Token)).ToArray();
            var producers = publisherClients.Select((c, i) => Publisher.Start(c, topic, i, settings, schedule, cancellationToken)).ToArray();
            var lags = await Task.WhenAll(producers);
            var published = Stopwatch.GetTimestamp();
            await Task.WhenAll(publisherClients.Select(c => c.FlushAsync(cancellationToken)));

            // Every message is now in a subscriber's agent-side buffer, delivered, or dropped and
            // counted. A subscriber-side Ping makes the agent send anything still pending.
            await Task.WhenAll(subscribers.Select(s => s.Client.FlushAsync(cancellationToken)));
            var complete = await WaitForSubscribersAsync(subscribers, settings.IdleTimeout, cancellationToken);
            var finished = subscribers.Count == 0 ? published : subscribers.Max(s => s.FinishedAt ?? Stopwatch.GetTimestamp());
            await stop.CancelAsync();
            await Task.WhenAll(consumers.Select(c => c.ContinueWith(_ => { }, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default)));

            // An incomplete run may still get deliveries: a subscriber's reader records into its
            // histogram, which is not thread-safe. Disposing the subscribers' clients ends their
            // readers (DisposeAsync returns after the read loop has stopped); then the tallies hold still.
            foreach (var s in subscribers)
            {
                await s.Client.DisposeAsync();
            }

            var histogram = new LatencyHistogram();
            foreach (var s in subscribers)
            {
                histogram.Merge(s.Histogram);
            }

            return new BenchResult(
                settings,
                Sent: settings.Messages,
                PublishSeconds: Stopwatch.GetElapsedTime(schedule.Origin, published).TotalSeconds,
                Delivered: subscribers.Sum(s => s.Delivered),
                Dropped: subscribers.Sum(s => s.Client.DroppedTotal),
                Expected: settings.Messages * settings.Subscribers,
                DeliverSeconds: Stopwatch.GetElapsedTime(schedule.Origin, finished).TotalSeconds,
                Complete: complete,
                MaxBehindSchedule: TimeSpan.FromSeconds(lags.Max() / (double)Stopwatch.Frequency),
                PublisherSends: publisherClients.Sum(c => c.Writer.DirectSends + c.Writer.WriterSends),
                Latency: histogram);
        }
        finally
        {
            foreach (var client in clients)
            {
                await client.DisposeAsync();
            }
        }
    }

    private static async Task<bool> WaitForSubscribersAsync(List<BenchSubscriber> subscribers, TimeSpan idleTimeout, CancellationToken cancellationToken)
    {
        foreach (var subscriber in subscribers)
        {
            while (!subscriber.Done.IsCompleted)
            {
                var before = subscriber.Progress;
                var finished = await Task.WhenAny(subscriber.Done, Task.Delay(idleTimeout, cancellationToken));
                if (finished != subscriber.Done && subscriber.Progress == before)
                {
                    return false;
                }
            }
        }

        return true;
    }
}
