using System.Text;
using DaemonEye.Grains;
using DaemonEye.Topics;

namespace DaemonEye.Gateway;

/// <summary>A topic this connection has published on: its validated name, grain and pending batch.</summary>
internal sealed class TopicEntry(string topic, ITopicGrain grain, Metrics.TallyCounter? published = null, bool durable = false)
{
    private byte[] _buffer = new byte[1024];
    private int[] _ends = new int[16];
    private int _length;

    public string Topic { get; } = topic;

    /// <summary>Messages on this topic go to the durable log before they are routed (durability.topics).</summary>
    public bool Durable { get; } = durable;

    public ITopicGrain Grain { get; } = grain;

    public int Count { get; private set; }

    public const byte VerdictUnknown = 0;
    public const byte VerdictAllowed = 1;
    public const byte VerdictDenied = 2;

    /// <summary>The connection's access decision for publishing here, cached (see Security.AccessPolicy).</summary>
    public byte PublishVerdict { get; set; }

    /// <summary>This topic's root tally of daemoneye.bus.published.</summary>
    public Metrics.TallyCounter? Published { get; } = published;

    // The topic's route as last found in the silo's table; null until found, or after it retired.
    private TopicRoute? _route;

    /// <summary>True when the topic has an open route (remembered, or found in the table now).</summary>
    public bool HasOpenRoute(TopicRoutes routes)
    {
        if (_route is { IsRetired: false })
        {
            return true;
        }

        _route = routes.TryGet(Topic, out var route) ? route : null;
        return _route is not null;
    }

    /// <summary>
    /// Routes <paramref name="batch"/> through the topic's open route, without a grain call. False when
    /// the topic has no open route (its grain is not active): the caller goes through the grain.
    /// </summary>
    public bool TryRoute(TopicRoutes routes, PublishBatch batch)
    {
        if (_route is { } known && known.TryPublish(batch))
        {
            return true;
        }

        if (routes.TryGet(Topic, out var route) && route.TryPublish(batch))
        {
            _route = route;
            return true;
        }

        _route = null;
        return false;
    }

    public void Append(ReadOnlySpan<byte> publish)
    {
        if (_length + publish.Length > _buffer.Length)
        {
            Array.Resize(ref _buffer, Math.Max(_buffer.Length * 2, _length + publish.Length));
        }

        if (Count == _ends.Length)
        {
            Array.Resize(ref _ends, _ends.Length * 2);
        }

        publish.CopyTo(_buffer.AsSpan(_length));
        _length += publish.Length;
        _ends[Count++] = _length;
    }

    /// <summary>
    /// Hands the pending messages over as a batch borrowed from this entry's buffers (valid until the
    /// routing call returns: see <see cref="PublishBatch.Borrowed"/>) and starts a new one.
    /// </summary>
    public PublishBatch TakeBatch(long connectionId, long readTimestamp = 0)
    {
        Published?.Add(Count);
        var batch = PublishBatch.Borrowed(Topic, _buffer, _ends, Count, connectionId, readTimestamp);
        _length = 0;
        Count = 0;
        return batch;
    }
}

/// <summary>
/// Groups the Publish frames of one read by topic and routes each group as one batch. Also keeps,
/// per connection, topic bytes to their validated name and route, so a hot topic is validated
/// once; and holds the topic limits: at most <c>broker.max_topics_per_connection</c> topics in use
/// by one connection, and no new topic once <c>broker.max_topics</c> are live in the agent.
/// </summary>
internal sealed class PublishAccumulator(IGrainFactory grains, TopicRoutes routes, int maxTopicsPerConnection = 1000, int maxTopics = 10_000, Metrics.BusMetrics? metrics = null, Durability.DurableLog? durable = null)
{
    private readonly Dictionary<string, TopicEntry> _topics = new(StringComparer.Ordinal);
    private readonly List<TopicEntry> _pending = [];

    public bool IsEmpty => _pending.Count == 0;

    public int PendingMessages { get; private set; }

    /// <summary>Batches of the last flush that the durable log refused (neither logged nor routed); the caller reports and clears them.</summary>
    public List<(string Topic, int Count, string Reason)> Refused { get; } = [];

    /// <summary>When the socket read now being parsed returned (Stopwatch timestamp); stamped on the batches.</summary>
    public long ReadTimestamp { get; set; }

    /// <summary>
    /// Resolves a topic from its UTF-8 bytes; null with <paramref name="error"/> when invalid or over
    /// a topic limit (then <paramref name="limit"/> names it).
    /// </summary>
    public TopicEntry? Resolve(ReadOnlySpan<byte> utf8, out string? error, out Security.Limit? limit)
    {
        error = null;
        limit = null;
        if (utf8.Length <= TopicRules.MaxBytes && Ascii.IsValid(utf8))
        {
            Span<char> chars = stackalloc char[utf8.Length];
            Ascii.ToUtf16(utf8, chars, out _);
            if (_topics.GetAlternateLookup<ReadOnlySpan<char>>().TryGetValue(chars, out var known))
            {
                return known;
            }
        }

        var topic = Encoding.UTF8.GetString(utf8);
        var validation = TopicRules.ValidateTopic(topic);
        if (!validation.IsValid)
        {
            error = validation.Error;
            return null;
        }

        if (_topics.Count >= maxTopicsPerConnection && !ReleaseIdleTopics())
        {
            limit = Security.Limit.MaxTopicsPerConnection;
            error = $"'{topic}' would be topic {_topics.Count + 1} this connection uses; broker.max_topics_per_connection is {maxTopicsPerConnection}. A topic is released broker.topic_idle_seconds after its last publish; publish on fewer distinct topics or raise the limit";
            return null;
        }

        var entry = new TopicEntry(topic, grains.GetGrain<ITopicGrain>(topic), metrics?.PublishedCounter(topic), durable?.IsDurable(topic) ?? false);
        _topics[topic] = entry;
        return entry;
    }

    /// <summary>
    /// Null when <paramref name="entry"/>'s topic may take a publish now: it is live, or the agent has
    /// room for one more live topic (broker.max_topics; a soft cap: connections opening topics at the
    /// same moment can pass it by a few). Otherwise the refusal.
    /// </summary>
    public string? AdmitTopic(TopicEntry entry) =>
        entry.HasOpenRoute(routes) || routes.Count < maxTopics
            ? null
            : $"'{entry.Topic}' is not live and {routes.Count} topics are; broker.max_topics is {maxTopics}. Idle topics are released after broker.topic_idle_seconds; publish on fewer distinct topics or raise the limit";

    /// <summary>Forgets this connection's topics whose routes have been released; true when that made room.</summary>
    private bool ReleaseIdleTopics()
    {
        List<string>? released = null;
        foreach (var (topic, entry) in _topics)
        {
            if (entry.Count == 0 && !entry.HasOpenRoute(routes))
            {
                (released ??= []).Add(topic);
            }
        }

        foreach (var topic in released ?? [])
        {
            _topics.Remove(topic);
        }

        return _topics.Count < maxTopicsPerConnection;
    }

    public void Add(TopicEntry entry, ReadOnlySpan<byte> publish)
    {
        if (entry.Count == 0)
        {
            _pending.Add(entry);
        }

        entry.Append(publish);
        PendingMessages++;
    }

    /// <summary>
    /// Routes every pending batch: through its topic's open route on this thread, or, for a topic
    /// whose grain is not active, through the grain (which activates it and opens the route). A
    /// batch on a durable topic is routed once the log has committed it (log before deliver). The
    /// task completes when all are routed; it is already complete when no grain call was needed and
    /// every durable batch was committed on the spot (the log's writer was free).
    /// </summary>
    /// <remarks>
    /// The batches borrow the entries' buffers, which stay unchanged until the task completes: the
    /// connection's read loop awaits it before it parses the next read.
    /// </remarks>
    public ValueTask FlushAsync(long connectionId)
    {
        if (_pending.Count == 0)
        {
            return ValueTask.CompletedTask;
        }

        PendingMessages = 0;
        List<Task>? calls = null;
        List<(TopicEntry Entry, PublishBatch Batch, Task<ulong> Appended)>? committing = null;
        foreach (var entry in _pending)
        {
            var batch = entry.TakeBatch(connectionId, ReadTimestamp);
            if (entry.Durable && durable is not null)
            {
                // Logged before it is delivered: a subscriber never sees a durable message the log lacks.
                var appended = durable.AppendAsync(batch);
                if (committing is not null || !appended.IsCompleted)
                {
                    // Queued behind a commit under way: routed when its group is committed, after any queued before it.
                    (committing ??= []).Add((entry, batch, appended.AsTask()));
                    continue;
                }

                if (!Logged(entry, batch, appended))
                {
                    continue;
                }
            }

            Route(entry, batch, ref calls);
        }

        _pending.Clear();
        if (committing is not null)
        {
            return RouteWhenCommittedAsync(committing, calls);
        }

        return calls switch
        {
            null => ValueTask.CompletedTask,
            [var only] => new ValueTask(only),
            _ => new ValueTask(Task.WhenAll(calls)),
        };
    }

    private async ValueTask RouteWhenCommittedAsync(List<(TopicEntry Entry, PublishBatch Batch, Task<ulong> Appended)> committing, List<Task>? calls)
    {
        foreach (var (entry, batch, appended) in committing)
        {
            try
            {
                await appended;
            }
            catch (Durability.DurableLogUnavailableException e)
            {
                Refused.Add((entry.Topic, batch.Count, e.Message));
                continue;
            }

            Route(entry, batch, ref calls);
        }

        if (calls is not null)
        {
            await Task.WhenAll(calls);
        }
    }

    /// <summary>True when the log took <paramref name="batch"/>; otherwise the refusal is noted for the caller to report.</summary>
    private bool Logged(TopicEntry entry, PublishBatch batch, ValueTask<ulong> appended)
    {
        try
        {
            appended.GetAwaiter().GetResult();
            return true;
        }
        catch (Durability.DurableLogUnavailableException e)
        {
            Refused.Add((entry.Topic, batch.Count, e.Message));
            return false;
        }
    }

    private void Route(TopicEntry entry, PublishBatch batch, ref List<Task>? calls)
    {
        if (!entry.TryRoute(routes, batch))
        {
            (calls ??= []).Add(entry.Grain.Publish(batch.Stable()));
        }
    }
}
