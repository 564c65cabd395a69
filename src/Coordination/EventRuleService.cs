using System.Threading.Channels;
using DaemonEye.Gateway;
using DaemonEye.Grains;
using DaemonEye.Protocol.Filesystem.V1;
using DaemonEye.Protocol.Network.V1;
using DaemonEye.Protocol.Process.V1;
using DaemonEye.Protocol.V1;
using DaemonEye.Topics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DaemonEye.Coordination;

/// <summary>What the event rules did since start: the queue between the bus and the windows, the windows, the evaluations.</summary>
public sealed record EventRulesReport(
    IReadOnlyList<EventWindowStats> Windows,
    long BatchesReceived,
    long MessagesReceived,
    long MessagesDropped,
    long MessagesUndecodable,
    long Rounds,
    long Evaluations,
    long RuleErrors,
    long AlertsPublished,
    long AlertsSuppressed,
    TimeSpan Debounce,
    TimeSpan Suppression)
{
    /// <summary>Rows a rule returned again in a later round (the same evidence still in the window): neither published nor suppressed.</summary>
    public long RowsRematched { get; init; }
}

/// <summary>
/// Event rules (<c>kind: event</c>): SQL over sliding windows of recent events, evaluated as events
/// arrive. The agent subscribes itself (<see cref="LocalSubscriptions"/>: one registry call at start,
/// none per message) to events.process.lifecycle, events.network.connection and fsmond's change
/// topics; the delivery, on the publishing thread, only queues the batch (bounded,
/// coordination.rules.event_queue_batches; a batch that does not fit is dropped and its messages
/// counted). One loop owns the windows (<see cref="EventWindowDatabase"/>): it takes every queued
/// batch, waits coordination.rules.event_debounce_ms for more (a burst is one round), appends them in
/// one transaction, applies each table's retention, and runs only the event rules that read a table
/// that received rows in the round. A matching row becomes an alert on events.alert.&lt;severity&gt;
/// (rule_kind "event") once: a row a rule returned in an earlier round (the same evidence, still in
/// the window) is counted as rematched and not raised again; a new row is de-duplicated per rule and key by an <see cref="AlertSuppressor"/> whose
/// window is the longer of coordination.rules.suppression_seconds and the longest event window, so
/// evidence still in a window does not raise the same alert twice. A timer prunes idle windows each
/// second. Rule files are re-read at most once a second.
/// </summary>
internal sealed partial class EventRuleService : IHostedService, ILocalSubscriber, IDisposable
{
    private static readonly TimeSpan Tick = TimeSpan.FromSeconds(1);

    /// <summary>The sentinel the timer queues: "prune and re-read the rules", no messages.</summary>
    private static readonly PublishBatch TickBatch = new("events.tick", [], [], 0, 0);

    private readonly RulesOptions _options;
    private readonly LocalSubscriptions _subscriptions;
    private readonly IBusPublisher _publisher;
    private readonly TimeProvider _time;
    private readonly ILogger<EventRuleService> _logger;
    private readonly Channel<PublishBatch> _queue;
    private readonly EventWindowDatabase _windows;
    private readonly Lock _windowsGate = new();
    private readonly AlertSuppressor _suppressor;
    private readonly AlertFactory _alerts;
    private readonly CancellationTokenSource _stopping = new();
    private List<DetectionRule> _rules = [];
    private long _rulesLoadedAt = long.MinValue;
    private long _localConnection;
    private ITimer? _timer;
    private Task? _loop;
    private readonly Dictionary<string, Dictionary<string, long>> _matched = new(StringComparer.Ordinal);
    private long _batches, _messages, _dropped, _undecodable, _rounds, _evaluations, _ruleErrors, _published, _rematched;

    /// <summary>Completed (and replaced) when a round's evaluation ends; see <see cref="WaitForRoundsAsync"/>.</summary>
    private TaskCompletionSource _roundEnded = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public EventRuleService(IOptions<CoordinationOptions> options, LocalSubscriptions subscriptions, IBusPublisher publisher, TimeProvider time, ILogger<EventRuleService> logger)
    {
        _options = options.Value.Rules;
        _subscriptions = subscriptions;
        _publisher = publisher;
        _time = time;
        _logger = logger;
        _queue = Channel.CreateBounded<PublishBatch>(new BoundedChannelOptions(_options.EventQueueBatches) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
        _windows = new EventWindowDatabase(_options.EventWindows, _options.EffectiveWatchLists, time);
        var longest = _options.EventWindows.All.Max(w => w.Window.MaxAge);
        Suppression = _options.Suppression > longest ? _options.Suppression : longest;
        _suppressor = new AlertSuppressor(time, Suppression);
        _alerts = new AlertFactory(time);
    }

    /// <summary>The topics whose events fill the windows.</summary>
    public static IReadOnlyList<string> Topics { get; } = [WellKnownTopics.ProcessLifecycle, WellKnownTopics.NetworkConnection, .. WellKnownTopics.FilesystemChanges];

    private static readonly string TopicList = string.Join(", ", Topics);

    /// <summary>The event rules' de-duplication window: the longer of suppression_seconds and the longest event window.</summary>
    public TimeSpan Suppression { get; }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        _localConnection = await _subscriptions.SubscribeAsync(Topics, this);
        _loop = Task.Run(() => LoopAsync(_stopping.Token), CancellationToken.None);
        _timer = _time.CreateTimer(_ => _queue.Writer.TryWrite(TickBatch), null, Tick, Tick);
        var count = Rules().Count;
        LogStarted(_logger, count, TopicList);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_timer is not null)
        {
            await _timer.DisposeAsync();
        }

        try
        {
            await _subscriptions.CloseAsync(_localConnection);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The silo may already be stopping; the subscription goes with it.
        }

        _queue.Writer.TryComplete();
        await _stopping.CancelAsync();
        if (_loop is not null)
        {
            await _loop.WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    /// <summary>Every topic feeds the windows the same way: which of the subscriptions matched does not matter.</summary>
    int ILocalSubscriber.Deliver(DeliveryTarget target, PublishBatch batch, ulong firstSequence) => Deliver(batch, firstSequence);

    /// <summary>On the publishing thread: queue the batch (a copy when it is borrowed), or count its messages as dropped.</summary>
    public int Deliver(PublishBatch batch, ulong firstSequence)
    {
        if (_queue.Writer.TryWrite(batch.Stable()))
        {
            Interlocked.Increment(ref _batches);
            Interlocked.Add(ref _messages, batch.Count);
            return batch.Count;
        }

        Interlocked.Add(ref _dropped, batch.Count);
        return 0;
    }

    /// <summary>The event rules and the windows now.</summary>
    public EventRulesReport Status()
    {
        IReadOnlyList<EventWindowStats> windows;
        lock (_windowsGate)
        {
            windows = _windows.Stats();
        }

        return new EventRulesReport(
            windows,
            Interlocked.Read(ref _batches),
            Interlocked.Read(ref _messages),
            Interlocked.Read(ref _dropped),
            Interlocked.Read(ref _undecodable),
            Interlocked.Read(ref _rounds),
            Interlocked.Read(ref _evaluations),
            Interlocked.Read(ref _ruleErrors),
            Interlocked.Read(ref _published),
            _suppressor.Suppressed,
            _options.EventDebounce,
            Suppression)
        {
            RowsRematched = Interlocked.Read(ref _rematched),
        };
    }

    /// <summary>One event rule over the windows as they are now; nothing is published.</summary>
    public (RuleEvaluation Evaluation, IReadOnlyDictionary<string, int> TableRows) Test(DetectionRule rule)
    {
        lock (_windowsGate)
        {
            var rows = EventWindowDatabase.Tables.ToDictionary(t => t, _windows.Rows, StringComparer.Ordinal);
            return (_windows.Evaluate(rule.Sql, _options.TimeLimit, 10_000), rows);
        }
    }

    private async Task LoopAsync(CancellationToken cancellationToken)
    {
        var reader = _queue.Reader;
        var changed = new HashSet<string>(StringComparer.Ordinal);
        try
        {
            while (await reader.WaitToReadAsync(cancellationToken))
            {
                changed.Clear();
                lock (_windowsGate)
                {
                    _windows.BeginRound();
                    Drain(reader, changed);
                }

                if (changed.Count > 0 && _options.EventDebounce > TimeSpan.Zero)
                {
                    await Task.Delay(_options.EventDebounce, _time, cancellationToken);
                    lock (_windowsGate)
                    {
                        Drain(reader, changed);
                    }
                }

                lock (_windowsGate)
                {
                    _windows.EndRound();
                }

                if (changed.Count > 0)
                {
                    await EvaluateAsync(changed, cancellationToken);
                    Interlocked.Increment(ref _rounds);
                    Interlocked.Exchange(ref _roundEnded, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        catch (Exception ex)
        {
            LogLoopFailed(_logger, ex);
        }
        finally
        {
            _roundEnded.TrySetCanceled(CancellationToken.None);
        }
    }

    /// <summary>
    /// Waits until at least <paramref name="rounds"/> rounds have been evaluated (Rounds counts rounds whose
    /// evaluation has ended), then returns the status; for callers that must see a round's outcome.
    /// Faults with <see cref="OperationCanceledException"/> once the loop has ended.
    /// </summary>
    public async Task<EventRulesReport> WaitForRoundsAsync(long rounds, CancellationToken cancellationToken)
    {
        while (true)
        {
            var ended = Volatile.Read(ref _roundEnded).Task;
            var status = Status();
            if (status.Rounds >= rounds)
            {
                return status;
            }

            await ended.WaitAsync(cancellationToken);
        }
    }

    /// <summary>Appends every queued batch's events to their tables; names the tables that got rows.</summary>
    private void Drain(ChannelReader<PublishBatch> reader, HashSet<string> changed)
    {
        while (reader.TryRead(out var batch))
        {
            if (ReferenceEquals(batch, TickBatch))
            {
                continue;
            }

            for (var i = 0; i < batch.Count; i++)
            {
                try
                {
                    var message = Publish.Parser.ParseFrom(batch.Message(i).Span);
                    changed.Add(Append(batch.Topic, message.Payload.Span));
                }
                catch (Google.Protobuf.InvalidProtocolBufferException)
                {
                    if (Interlocked.Increment(ref _undecodable) == 1)
                    {
                        LogUndecodable(_logger, batch.Topic);
                    }
                }
            }
        }
    }

    private string Append(string topic, ReadOnlySpan<byte> payload)
    {
        if (topic == WellKnownTopics.ProcessLifecycle)
        {
            _windows.Append(ProcessLifecycle.Parser.ParseFrom(payload));
            return EventWindowDatabase.ProcessEvents;
        }

        if (topic == WellKnownTopics.NetworkConnection)
        {
            _windows.Append(ConnectionEvent.Parser.ParseFrom(payload));
            return EventWindowDatabase.ConnectionEvents;
        }

        _windows.Append(FileEvent.Parser.ParseFrom(payload));
        return EventWindowDatabase.FilesystemEvents;
    }

    public void Dispose()
    {
        _timer?.Dispose();
        _stopping.Dispose();
        _windows.Dispose();
    }

    [LoggerMessage(EventId = 5120, Level = LogLevel.Information, Message = "Event rules: {Count} loaded; windows fed from {Topics}")]
    private static partial void LogStarted(ILogger logger, int count, string topics);

    [LoggerMessage(EventId = 5121, Level = LogLevel.Error, Message = "Event rule loop failed; event rules no longer run")]
    private static partial void LogLoopFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 5122, Level = LogLevel.Warning, Message = "Event rules: a message on {Topic} does not decode as its event type; such messages are counted (rules list) and skipped")]
    private static partial void LogUndecodable(ILogger logger, string topic);

    [LoggerMessage(EventId = 5123, Level = LogLevel.Warning, Message = "Event rule {RuleId} ({File}:{Line}) {Error}")]
    private static partial void LogRuleFailed(ILogger logger, string ruleId, string file, int line, string error);

    [LoggerMessage(EventId = 5124, Level = LogLevel.Warning, Message = "Event rule {RuleId}: {Count} more new matching row(s) in one round not published (coordination.rules.max_alerts_per_rule is {Max})")]
    private static partial void LogAlertsCapped(ILogger logger, string ruleId, long count, int max);
}
