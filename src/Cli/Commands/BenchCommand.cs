using System.Buffers.Binary;
using System.CommandLine;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;
using DaemonEye.Client;

namespace DaemonEye.Cli.Commands;

/// <summary>
/// <c>bench pubsub</c>: publishers and subscribers in this process, through the running agent, like
/// <c>nats bench</c>. Each payload starts with the publisher's Stopwatch timestamp, so the
/// subscriber measures publish-to-deliver latency. The run ends deterministically: publishers
/// flush (Ping barrier), then every subscriber has delivered + dropped = messages.
/// </summary>
internal static class BenchCommand
{
    public static Command Build(CliContext context)
    {
        var bench = new Command("bench", "Measure the running agent");
        bench.Subcommands.Add(BuildPubSub(context));
        bench.Subcommands.Add(BenchRpcCommand.Build(context));
        bench.Subcommands.Add(BenchTasksCommand.Build(context));
        return bench;
    }

    private static Command BuildPubSub(CliContext context)
    {
        var publishers = new Option<int>("--publishers") { Description = "Publishing connections", DefaultValueFactory = _ => 1 };
        var subscribers = new Option<int>("--subscribers") { Description = "Subscribing connections; each receives every message", DefaultValueFactory = _ => 1 };
        var messages = new Option<long>("--messages") { Description = "Messages to publish in all", DefaultValueFactory = _ => 1_000_000 };
        var size = new Option<int>("--size") { Description = "Payload bytes (at least 8: the timestamp)", DefaultValueFactory = _ => 64 };
        var rate = new Option<long>("--rate") { Description = "Target publish rate in msgs/s over all publishers; 0 = as fast as possible", DefaultValueFactory = _ => 0 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object with the results" };
        var timeout = new Option<double>("--idle-timeout") { Description = "Give up when subscribers make no progress for this many seconds after the publishers' flush", DefaultValueFactory = _ => 10 };
        var command = new Command("pubsub", "Publish to one topic and measure throughput, latency and drops");
        command.Options.Add(publishers);
        command.Options.Add(subscribers);
        command.Options.Add(messages);
        command.Options.Add(size);
        command.Options.Add(rate);
        command.Options.Add(json);
        command.Options.Add(timeout);
        command.SetAction((parse, cancellationToken) => AgentConnection.RunAsync(context, async () =>
        {
            var settings = new BenchSettings(parse.GetValue(publishers), parse.GetValue(subscribers), parse.GetValue(messages), parse.GetValue(size), parse.GetValue(rate), TimeSpan.FromSeconds(parse.GetValue(timeout)));
            var problems = settings.Validate().ToList();
            if (problems.Count > 0)
            {
                foreach (var problem in problems)
                {
                    context.Error.WriteLine($"error: {problem}");
                }

                return CliApplication.Invalid;
            }

            var result = await RunAsync(context, parse, settings, cancellationToken);
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

    private static async Task<BenchResult?> RunAsync(CliContext context, ParseResult parse, BenchSettings settings, CancellationToken cancellationToken)
    {
        var topic = $"events.bench.run-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4))}";
        var clients = new List<BusClient>();
        try
        {
            var subscribers = new List<BenchSubscriber>();
            for (var i = 0; i < settings.Subscribers; i++)
            {
                var client = await AgentConnection.ConnectAsync(context, AgentConnection.Options(context, parse, $"-sub{i}"), cancellationToken);
                if (client is null)
                {
                    return null;
                }

                clients.Add(client);
                var subscription = await client.SubscribeAsync(topic, cancellationToken);
                subscribers.Add(new BenchSubscriber(client, subscription, settings.Messages));
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

            using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var started = Stopwatch.GetTimestamp();
            var consumers = subscribers.Select(s => Task.Run(() => s.ConsumeAsync(started, stop.Token), CancellationToken.None)).ToArray();
            var share = settings.Messages / settings.Publishers;
            var producers = publisherClients.Select((c, i) =>
            {
                var count = share + (i == 0 ? settings.Messages % settings.Publishers : 0);
                var perPublisherRate = settings.Rate / (double)settings.Publishers;
                return Task.Run(() => PublishAsync(c, topic, count, settings.Size, perPublisherRate, cancellationToken), CancellationToken.None);
            }).ToArray();
            await Task.WhenAll(producers);
            var published = Stopwatch.GetTimestamp();
            await Task.WhenAll(publisherClients.Select(c => c.FlushAsync(cancellationToken)));

            // Every message is now in a subscriber's agent-side buffer, delivered, or dropped and
            // counted. A subscriber-side Ping makes the agent send anything still pending.
            await Task.WhenAll(subscribers.Select(s => s.Client.FlushAsync(cancellationToken)));
            var complete = await WaitForSubscribersAsync(subscribers, settings.IdleTimeout, cancellationToken);
            var finished = subscribers.Count == 0 ? published : subscribers.Max(s => s.FinishedAt ?? Stopwatch.GetTimestamp());
            await stop.CancelAsync();
            await Task.WhenAll(consumers.Select(c => c.ContinueWith(_ => { }, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default)));

            var histogram = new LatencyHistogram();
            foreach (var s in subscribers)
            {
                histogram.Merge(s.Histogram);
            }

            return new BenchResult(
                settings,
                Sent: settings.Messages,
                PublishSeconds: Stopwatch.GetElapsedTime(started, published).TotalSeconds,
                Delivered: subscribers.Sum(s => s.Delivered),
                Dropped: subscribers.Sum(s => s.Client.DroppedTotal),
                Expected: settings.Messages * settings.Subscribers,
                DeliverSeconds: Stopwatch.GetElapsedTime(started, finished).TotalSeconds,
                Complete: complete,
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

    private static async Task PublishAsync(BusClient client, string topic, long count, int size, double rate, CancellationToken cancellationToken)
    {
        var payload = new byte[size];
        payload.AsSpan(8).Fill((byte)'x');
        var start = Stopwatch.GetTimestamp();
        for (long i = 0; i < count; i++)
        {
            if (rate > 0 && (i & 63) == 0)
            {
                var due = start + (long)(i / rate * Stopwatch.Frequency);
                var ahead = due - Stopwatch.GetTimestamp();
                if (ahead > Stopwatch.Frequency / 1000)
                {
                    await Task.Delay(TimeSpan.FromSeconds(ahead / (double)Stopwatch.Frequency), cancellationToken);
                }
            }

            BinaryPrimitives.WriteInt64LittleEndian(payload, Stopwatch.GetTimestamp());
            await client.PublishAsync(topic, payload, cancellationToken: cancellationToken);
        }
    }

    private sealed record BenchSettings(int Publishers, int Subscribers, long Messages, int Size, long Rate, TimeSpan IdleTimeout)
    {
        public IEnumerable<string> Validate()
        {
            if (Publishers < 1)
            {
                yield return $"--publishers is {Publishers}; it must be at least 1";
            }

            if (Subscribers < 0)
            {
                yield return $"--subscribers is {Subscribers}; it must be 0 or more";
            }

            if (Messages < 1)
            {
                yield return $"--messages is {Messages}; it must be at least 1";
            }

            if (Size < 8)
            {
                yield return $"--size is {Size}; it must be at least 8 (the payload carries an 8-byte timestamp)";
            }

            if (Rate < 0)
            {
                yield return $"--rate is {Rate}; it must be 0 (as fast as possible) or more";
            }

            if (IdleTimeout <= TimeSpan.Zero)
            {
                yield return "--idle-timeout must be positive";
            }
        }
    }

    /// <summary>One subscribing connection: counts, measures latency, and knows when it has everything.</summary>
    private sealed class BenchSubscriber
    {
        private readonly long _expected;
        private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private long _delivered;

        public BenchSubscriber(BusClient client, BusSubscription subscription, long expected)
        {
            Client = client;
            Subscription = subscription;
            _expected = expected;
            client.Dropped += (_, _) => CheckDone();
        }

        public BusClient Client { get; }

        public BusSubscription Subscription { get; }

        public LatencyHistogram Histogram { get; } = new();

        public long Delivered => Interlocked.Read(ref _delivered);

        public long Progress => Delivered + Client.DroppedTotal;

        public Task Done => _done.Task;

        public long? FinishedAt { get; private set; }

        public async Task ConsumeAsync(long started, CancellationToken cancellationToken)
        {
            var reader = Subscription.Reader;
            var toNanos = 1e9 / Stopwatch.Frequency;
            try
            {
                while (await reader.WaitToReadAsync(cancellationToken))
                {
                    var n = 0L;
                    while (reader.TryRead(out var message))
                    {
                        var now = Stopwatch.GetTimestamp();
                        var sent = BinaryPrimitives.ReadInt64LittleEndian(message.Payload.Span);
                        if (sent >= started)
                        {
                            Histogram.Record((long)((now - sent) * toNanos));
                        }

                        n++;
                    }

                    Interlocked.Add(ref _delivered, n);
                    CheckDone();
                }
            }
            catch (OperationCanceledException)
            {
            }
        }

        private void CheckDone()
        {
            if (Progress >= _expected && !_done.Task.IsCompleted)
            {
                FinishedAt = Stopwatch.GetTimestamp();
                _done.TrySetResult();
            }
        }
    }

    private sealed record BenchResult(BenchSettings Settings, long Sent, double PublishSeconds, long Delivered, long Dropped, long Expected, double DeliverSeconds, bool Complete, LatencyHistogram Latency)
    {
        private double SentPerSec => PublishSeconds > 0 ? Sent / PublishSeconds : 0;

        private double DeliveredPerSec => DeliverSeconds > 0 ? Delivered / DeliverSeconds : 0;

        public void Print(TextWriter output)
        {
            output.WriteLine($"pubsub: {Settings.Publishers} publisher(s), {Settings.Subscribers} subscriber(s), {Settings.Messages:N0} messages of {Settings.Size} B{(Settings.Rate > 0 ? $" at {Settings.Rate:N0} msgs/s" : "")}");
            output.WriteLine($"  sent       {Sent,14:N0} msgs  {SentPerSec,14:N0} msgs/s  ({PublishSeconds:0.000} s)");
            output.WriteLine($"  delivered  {Delivered,14:N0} msgs  {DeliveredPerSec,14:N0} msgs/s  ({DeliverSeconds:0.000} s)");
            output.WriteLine($"  dropped    {Dropped,14:N0} msgs");
            output.WriteLine($"  latency    {Latency.Summary()}");
        }

        public string ToJson()
        {
            using var buffer = new MemoryStream();
            using (var w = new Utf8JsonWriter(buffer))
            {
                w.WriteStartObject();
                w.WriteNumber("publishers", Settings.Publishers);
                w.WriteNumber("subscribers", Settings.Subscribers);
                w.WriteNumber("messages", Settings.Messages);
                w.WriteNumber("size", Settings.Size);
                w.WriteNumber("rate", Settings.Rate);
                w.WriteNumber("sent", Sent);
                w.WriteNumber("sent_per_sec", Math.Round(SentPerSec));
                w.WriteNumber("delivered", Delivered);
                w.WriteNumber("delivered_per_sec", Math.Round(DeliveredPerSec));
                w.WriteNumber("dropped", Dropped);
                w.WriteNumber("expected", Expected);
                w.WriteBoolean("complete", Complete);
                w.WriteNumber("publish_seconds", Math.Round(PublishSeconds, 6));
                w.WriteNumber("deliver_seconds", Math.Round(DeliverSeconds, 6));
                Latency.WriteMicros(w);
                w.WriteEndObject();
            }

            return System.Text.Encoding.UTF8.GetString(buffer.ToArray());
        }
    }
}
