using System.Buffers.Binary;
using System.Diagnostics;
using System.Text.Json;
using DaemonEye.Client;

namespace DaemonEye.Cli.Commands;

/// <summary><c>bench pubsub</c>'s parts: the schedule, the publishers, the subscribers and the result.</summary>
internal static partial class BenchCommand
{
    /// <summary>
    /// When each message is due. With a rate, publisher <c>p</c> of <c>P</c> sends messages
    /// <c>p, p + P, p + 2P, ...</c> of one stream, message <c>n</c> due at <c>origin + n / rate</c>: the
    /// publishers interleave evenly. Messages before <see cref="BenchSettings.Warmup"/> are not
    /// recorded: their scheduled times are before <see cref="RecordFrom"/>.
    /// </summary>
    private sealed class Schedule(BenchSettings settings)
    {
        private long _recordFrom = long.MaxValue;

        public long Origin { get; private set; }

        /// <summary>The scheduled time of the first recorded message (as fast as possible: set when publisher 0 gets there).</summary>
        public long RecordFrom => Volatile.Read(ref _recordFrom);

        public void Start(long origin)
        {
            Origin = origin;
            if (settings.Rate > 0 || settings.Warmup == 0)
            {
                Volatile.Write(ref _recordFrom, settings.Rate > 0 ? DueAt(settings.Warmup) : 0);
            }
        }

        /// <summary>The scheduled time of message <paramref name="n"/> of the whole stream.</summary>
        public long DueAt(long n) => Origin + (long)(n * (Stopwatch.Frequency / (double)settings.Rate));

        public void Reached(long n, long stamp)
        {
            if (settings.Rate == 0 && n == settings.Warmup)
            {
                Volatile.Write(ref _recordFrom, stamp);
            }
        }
    }

    /// <summary>One publishing connection on a thread of its own (it sleeps and yields to keep its schedule).</summary>
    private static class Publisher
    {
        /// <summary>Publishes this publisher's share; the task's result is how far behind schedule it fell at worst (Stopwatch ticks).</summary>
        public static Task<long> Start(BusClient client, string topic, int index, BenchSettings settings, Schedule schedule, CancellationToken cancellationToken)
        {
            var done = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
            var thread = new Thread(() =>
            {
                try
                {
                    done.TrySetResult(Run(client, topic, index, settings, schedule, cancellationToken));
                }
                catch (Exception e)
                {
                    done.TrySetException(e);
                }
            })
            {
                IsBackground = true,
                Name = $"bench-publisher-{index}",
            };
            thread.Start();
            return done.Task;
        }

        private static long Run(BusClient client, string topic, int index, BenchSettings settings, Schedule schedule, CancellationToken cancellationToken)
        {
            Pacer.UsePreciseTimers();
            var payload = new byte[settings.Size];
            payload.AsSpan(8).Fill((byte)'x');
            var step = settings.Publishers;
            var maxBehind = 0L;
            Pacer.WaitUntil(schedule.Origin);
            for (long n = index; n < settings.Messages && !cancellationToken.IsCancellationRequested;)
            {
                var now = Stopwatch.GetTimestamp();
                if (settings.Rate > 0)
                {
                    var due = schedule.DueAt(n);
                    if (due > now)
                    {
                        Pacer.WaitUntil(due);
                        now = Stopwatch.GetTimestamp();
                    }

                    maxBehind = Math.Max(maxBehind, now - due);
                }

                // Every message of this publisher that is due by now, back to back: a publisher that
                // woke late catches up at once, and each message still carries its own due time.
                do
                {
                    var stamp = settings.Rate > 0 ? schedule.DueAt(n) : Stopwatch.GetTimestamp();
                    schedule.Reached(n, stamp);
                    BinaryPrimitives.WriteInt64LittleEndian(payload, stamp);
                    var publish = client.PublishAsync(topic, payload, cancellationToken: cancellationToken);
                    if (!publish.IsCompletedSuccessfully)
                    {
                        publish.AsTask().GetAwaiter().GetResult(); // the buffer is full: this thread waits for the writer
                    }

                    n += step;
                }
                while (n < settings.Messages && (settings.Rate == 0 || schedule.DueAt(n) <= now));
            }

            return maxBehind;
        }
    }

    private sealed record BenchSettings(int Publishers, int Subscribers, long Messages, int Size, long Rate, TimeSpan IdleTimeout, long Warmup, bool Handler, bool InlineCompletions, int BusyPollMicroseconds)
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

            if (Warmup < 0 || Warmup >= Messages)
            {
                yield return $"--warmup is {Warmup}; it must be 0 or more and less than --messages ({Messages})";
            }

            if (IdleTimeout <= TimeSpan.Zero)
            {
                yield return "--idle-timeout must be positive";
            }

            if (!Networking.SocketReactor.IsValidBusyPoll(TimeSpan.FromMicroseconds(BusyPollMicroseconds)))
            {
                yield return $"--busy-poll-us is {BusyPollMicroseconds}; it must be 0 (off) to {Networking.SocketReactor.MaxBusyPoll.TotalMicroseconds}";
            }
        }
    }

    /// <summary>One subscribing connection: counts, measures latency from each message's due time, and knows when it has everything.</summary>
    private sealed class BenchSubscriber
    {
        private static readonly double NanosPerTick = 1e9 / Stopwatch.Frequency;
        private readonly long _expected;
        private readonly Schedule _schedule;
        private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private BusSubscription? _subscription;
        private long _delivered;

        private BenchSubscriber(BusClient client, long expected, Schedule schedule)
        {
            Client = client;
            _expected = expected;
            _schedule = schedule;
            client.Dropped += (_, _) => CheckDone();
        }

        public BusClient Client { get; }

        public LatencyHistogram Histogram { get; } = new();

        public long Delivered => Interlocked.Read(ref _delivered);

        public long Progress => Delivered + Client.DroppedTotal;

        public Task Done => _done.Task;

        public long? FinishedAt { get; private set; }

        public static async Task<BenchSubscriber> SubscribeAsync(BusClient client, string topic, BenchSettings settings, Schedule schedule, CancellationToken cancellationToken)
        {
            var subscriber = new BenchSubscriber(client, settings.Messages, schedule);
            subscriber._subscription = settings.Handler
                ? await client.SubscribeAsync(topic, subscriber.OnDelivery, cancellationToken)
                : await client.SubscribeAsync(topic, cancellationToken);
            return subscriber;
        }

        /// <summary>Drains the buffered subscription (with --receive channel); with a handler there is nothing to drain.</summary>
        public Task StartConsuming(CancellationToken cancellationToken) =>
            _subscription!.Handler is null ? Task.Run(() => ConsumeAsync(cancellationToken), CancellationToken.None) : Task.CompletedTask;

        /// <summary>On the client's reader, for each message (--receive handler).</summary>
        private void OnDelivery(in BusDelivery delivery)
        {
            Record(Stopwatch.GetTimestamp(), BinaryPrimitives.ReadInt64LittleEndian(delivery.Payload));
            Interlocked.Increment(ref _delivered);
            CheckDone();
        }

        private async Task ConsumeAsync(CancellationToken cancellationToken)
        {
            var reader = _subscription!.Reader;
            try
            {
                while (await reader.WaitToReadAsync(cancellationToken))
                {
                    var n = 0L;
                    while (reader.TryRead(out var message))
                    {
                        Record(Stopwatch.GetTimestamp(), BinaryPrimitives.ReadInt64LittleEndian(message.Payload.Span));
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

        private void Record(long now, long due)
        {
            if (due >= _schedule.RecordFrom)
            {
                Histogram.Record((long)((now - due) * NanosPerTick));
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

    private sealed record BenchResult(BenchSettings Settings, long Sent, double PublishSeconds, long Delivered, long Dropped, long Expected, double DeliverSeconds, bool Complete, TimeSpan MaxBehindSchedule, long PublisherSends, LatencyHistogram Latency)
    {
        private double OfferedPerSec => PublishSeconds > 0 ? Sent / PublishSeconds : 0;

        private double DeliveredPerSec => DeliverSeconds > 0 ? Delivered / DeliverSeconds : 0;

        public void Print(TextWriter output)
        {
            output.WriteLine($"pubsub: {Settings.Publishers} publisher(s), {Settings.Subscribers} subscriber(s), {Settings.Messages:N0} messages of {Settings.Size} B{(Settings.Rate > 0 ? $" at {Settings.Rate:N0} msgs/s" : " as fast as possible")}; receive: {(Settings.Handler ? "handler" : "channel")}, completions {(Settings.InlineCompletions ? "inline" : "thread-pool")}, busy poll {Settings.BusyPollMicroseconds} µs");
            output.WriteLine($"  offered    {Sent,14:N0} msgs  {OfferedPerSec,14:N0} msgs/s  ({PublishSeconds:0.000} s{(Settings.Rate > 0 ? $"; at worst {MaxBehindSchedule.TotalMicroseconds:N0} µs behind schedule" : "")})");
            output.WriteLine($"  delivered  {Delivered,14:N0} msgs  {DeliveredPerSec,14:N0} msgs/s  ({DeliverSeconds:0.000} s)");
            output.WriteLine($"  dropped    {Dropped,14:N0} msgs");
            output.WriteLine($"  sends      {PublisherSends,14:N0} by the publishers, direct or a writer batch ({(PublisherSends > 0 ? Sent / (double)PublisherSends : 0):0.#} messages each)");
            output.WriteLine($"  latency    {Latency.Summary()}  (from each message's scheduled send time; {Latency.Count:N0} recorded)");
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
                w.WriteNumber("warmup", Settings.Warmup);
                w.WriteString("receive", Settings.Handler ? "handler" : "channel");
                w.WriteString("completions", Settings.InlineCompletions ? "inline" : "thread-pool");
                w.WriteNumber("busy_poll_us", Settings.BusyPollMicroseconds);
                w.WriteNumber("sent", Sent);
                w.WriteNumber("offered_per_sec", Math.Round(OfferedPerSec));
                w.WriteNumber("sent_per_sec", Math.Round(OfferedPerSec));
                w.WriteNumber("max_behind_schedule_us", Math.Round(MaxBehindSchedule.TotalMicroseconds, 1));
                w.WriteNumber("delivered", Delivered);
                w.WriteNumber("delivered_per_sec", Math.Round(DeliveredPerSec));
                w.WriteNumber("dropped", Dropped);
                w.WriteNumber("expected", Expected);
                w.WriteBoolean("complete", Complete);
                w.WriteNumber("publish_seconds", Math.Round(PublishSeconds, 6));
                w.WriteNumber("deliver_seconds", Math.Round(DeliverSeconds, 6));
                w.WriteNumber("recorded", Latency.Count);
                w.WriteNumber("publisher_sends", PublisherSends);
                Latency.WriteMicros(w);
                w.WriteEndObject();
            }

            return System.Text.Encoding.UTF8.GetString(buffer.ToArray());
        }
    }
}
