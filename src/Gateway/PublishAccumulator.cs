using System.Text;
using DaemonEye.Grains;
using DaemonEye.Topics;

namespace DaemonEye.Gateway;

/// <summary>A topic this connection has published on: its validated name, grain and pending batch.</summary>
internal sealed class TopicEntry(string topic, ITopicGrain grain, Metrics.TallyCounter? published = null)
{
    private byte[] _buffer = new byte[1024];
    private int[] _ends = new int[16];
    private int _length;

    public string Topic { get; } = topic;

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

    /// <summary>Moves the pending messages into an immutable batch and starts a new one.</summary>
    public PublishBatch TakeBatch(long connectionId, long readTimestamp = 0)
    {
        Published?.Add(Count);
        var batch = new PublishBatch(Topic, _buffer.AsSpan(0, _length).ToArray(), _ends.AsSpan(0, Count).ToArray(), Count, connectionId, readTimestamp);
        _length = 0;
        Count = 0;
        return batch;
    }
}

/// <summary>
/// Groups the Publish frames of one read by topic, so each topic gets one grain call per read
/// (the GPSTracker pattern). Also caches, per connection, topic bytes to their validated name and
/// grain reference, so a hot topic is validated once.
/// </summary>
internal sealed class PublishAccumulator(IGrainFactory grains, TopicRoutes routes, int topicCacheCapacity = 4096, Metrics.BusMetrics? metrics = null)
{
    private readonly Dictionary<string, TopicEntry> _topics = new(StringComparer.Ordinal);
    private readonly List<TopicEntry> _pending = [];

    public bool IsEmpty => _pending.Count == 0;

    public int PendingMessages { get; private set; }

    /// <summary>When the socket read now being parsed returned (Stopwatch timestamp); stamped on the batches.</summary>
    public long ReadTimestamp { get; set; }

    /// <summary>Resolves a topic from its UTF-8 bytes; null with <paramref name="error"/> when invalid.</summary>
    public TopicEntry? Resolve(ReadOnlySpan<byte> utf8, out string? error)
    {
        error = null;
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

        if (_topics.Count >= topicCacheCapacity && IsEmpty)
        {
            _topics.Clear();
        }

        var entry = new TopicEntry(topic, grains.GetGrain<ITopicGrain>(topic), metrics?.PublishedCounter(topic));
        _topics[topic] = entry;
        return entry;
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
    /// whose grain is not active, through the grain (which activates it and opens the route). The
    /// task completes when all are routed; it is already complete when no grain call was needed.
    /// </summary>
    public ValueTask FlushAsync(long connectionId)
    {
        if (_pending.Count == 0)
        {
            return ValueTask.CompletedTask;
        }

        PendingMessages = 0;
        List<Task>? calls = null;
        foreach (var entry in _pending)
        {
            var batch = entry.TakeBatch(connectionId, ReadTimestamp);
            if (!entry.TryRoute(routes, batch))
            {
                (calls ??= []).Add(entry.Grain.Publish(batch));
            }
        }

        _pending.Clear();
        return calls switch
        {
            null => ValueTask.CompletedTask,
            [var only] => new ValueTask(only),
            _ => new ValueTask(Task.WhenAll(calls)),
        };
    }
}
