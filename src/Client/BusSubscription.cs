using System.Threading.Channels;
using DaemonEye.Protocol;
using DaemonEye.Protocol.V1;

namespace DaemonEye.Client;

/// <summary>
/// One subscription of a <see cref="BusClient"/>. Messages wait in a bounded local buffer; when the
/// application falls behind, the client stops reading the socket and the agent's per-connection
/// buffer and drop accounting take over (see <see cref="BusClient.Dropped"/>). The object survives
/// reconnects: the client re-subscribes and maps the agent's new id to it. A subscription made with
/// a <see cref="BusMessageHandler"/> has no local buffer: the reader calls the handler for each
/// message, and <see cref="Reader"/> stays empty.
/// </summary>
public sealed class BusSubscription : IAsyncDisposable
{
    private readonly BusClient _client;
    private readonly Channel<BusMessage> _channel;
    private int _closed;
    private long _abandoned;
    private long _stalls;

    internal BusSubscription(BusClient client, string pattern, int capacity, BusMessageHandler? handler = null)
    {
        _client = client;
        Pattern = pattern;
        Handler = handler;
        Capacity = handler is null ? capacity : 0;
        _channel = Channel.CreateBounded<BusMessage>(new BoundedChannelOptions(handler is null ? capacity : 1)
        {
            SingleWriter = true,
            SingleReader = false,
            FullMode = BoundedChannelFullMode.Wait,
            AllowSynchronousContinuations = false,
        });
    }

    /// <summary>The subscribed pattern.</summary>
    public string Pattern { get; }

    /// <summary>The agent's id for this subscription on the current connection (0 before the first ack).</summary>
    public uint Id { get; private set; }

    /// <summary>The local buffer, for consumers that want to drain it in batches (TryRead).</summary>
    public ChannelReader<BusMessage> Reader => _channel.Reader;

    /// <summary>Completes when the subscription ends: unsubscribed, client disposed, or lost (faulted).</summary>
    public Task Completion => _channel.Reader.Completion;

    internal bool IsClosed => Volatile.Read(ref _closed) != 0;

    /// <summary>
    /// Messages the agent delivered to this subscription that the client abandoned because the
    /// connection ended while the local buffer was full (see <see cref="BusClient.AbandonedMessages"/>),
    /// and, for a durable subscription, the messages still unread in its buffer when a reconnect restores
    /// it. A durable subscription gets them again after the reconnect (they were not acknowledged).
    /// </summary>
    public long Abandoned => Interlocked.Read(ref _abandoned);

    /// <summary>
    /// Times the local buffer was full when a delivery arrived, so the client's reader stopped reading
    /// the socket until the application took a message (see <see cref="BusClient.SlowConsumer"/>).
    /// </summary>
    public long Stalls => Interlocked.Read(ref _stalls);

    /// <summary>The local buffer's size in messages; 0 for a handler subscription.</summary>
    public int Capacity { get; }

    /// <summary>The handler the reader calls for each message, instead of buffering it; null for a buffered subscription.</summary>
    internal BusMessageHandler? Handler { get; }

    internal object? Connection { get; private set; }

    /// <summary>Every message, in delivery order, until the subscription ends.</summary>
    public IAsyncEnumerable<BusMessage> ReadAllAsync(CancellationToken cancellationToken = default) =>
        _channel.Reader.ReadAllAsync(cancellationToken);

    /// <summary>Stops delivery; after it returns the agent sends nothing more for this subscription.</summary>
    public ValueTask UnsubscribeAsync(CancellationToken cancellationToken = default) => _client.UnsubscribeAsync(this, cancellationToken);

    public ValueTask DisposeAsync() => UnsubscribeAsync(CancellationToken.None);

    /// <summary>The durable consumer, for a durable subscription (<see cref="BusClient.SubscribeDurableAsync(string, DurableConsumerOptions, CancellationToken)"/>).</summary>
    public DurableConsumerOptions? Durable { get; internal init; }

    private readonly Lock _ackGate = new();
    private ulong _ackHighest;
    private int _ackUnsent;
    private uint _maxInFlight;

    /// <summary>
    /// A durable subscription: the most unacknowledged messages the agent sends it on the current connection
    /// (its SubscribeAck: <see cref="Capacity"/>, or the agent's durability.max_ack_pending when smaller); 0
    /// otherwise, and from an agent that does not say.
    /// </summary>
    public int MaxInFlight => (int)Volatile.Read(ref _maxInFlight);

    /// <summary>
    /// Acknowledges every message of this durable subscription up to log sequence <paramref name="sequence"/>
    /// (cumulative). Sent to the agent once per <see cref="DurableConsumerOptions.AckBatchSize"/> calls, or per
    /// half of <see cref="MaxInFlight"/> when that is fewer (the agent sends nothing more once MaxInFlight
    /// messages are unacknowledged, so a batch held back longer would stop delivery), and by <see cref="FlushAcksAsync"/>.
    /// </summary>
    public void Acknowledge(ulong sequence)
    {
        var durable = Durable ?? throw new InvalidOperationException($"subscription to '{Pattern}' is not durable");
        var window = MaxInFlight > 0 ? MaxInFlight : Capacity;
        var batch = Math.Min(durable.AckBatchSize, Math.Max(1, window / 2));
        ulong highest;
        lock (_ackGate)
        {
            _ackHighest = Math.Max(_ackHighest, sequence);
            if (++_ackUnsent < batch)
            {
                return;
            }

            _ackUnsent = 0;
            highest = _ackHighest;
        }

        _client.SendDurableAck(Id, highest);
    }

    /// <summary>Acknowledges <paramref name="message"/> and every earlier message of this durable subscription.</summary>
    public void Acknowledge(BusMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        Acknowledge(message.Sequence);
    }

    /// <summary>Sends the acknowledgements not sent yet and returns once the agent has stored them.</summary>
    public async Task FlushAcksAsync(CancellationToken cancellationToken = default)
    {
        ulong highest;
        lock (_ackGate)
        {
            _ackUnsent = 0;
            highest = _ackHighest;
        }

        if (highest > 0)
        {
            _client.SendDurableAck(Id, highest);
        }

        await _client.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The Subscribe frame. A durable one asks the agent for at most <see cref="Capacity"/> unacknowledged
    /// messages (<c>max_in_flight</c>): what is in the buffer is unacknowledged, so the buffer is never full
    /// when a durable delivery arrives, and the reader never stops reading for it (a Pong behind the
    /// deliveries, the barrier <see cref="FlushAcksAsync"/> waits for, is always read).
    /// </summary>
    internal Subscribe ToSubscribe() => Durable is not { } durable
        ? new Subscribe { Pattern = Pattern }
        : new Subscribe
        {
            Pattern = Pattern,
            DurableConsumer = durable.Consumer,
            Start = durable.Start.Kind,
            StartSequence = durable.Start.Sequence,
            StartTimeUnixNanos = durable.Start.Kind == DurableStart.FromTime ? (ulong)((durable.Start.Time.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) * 100) : 0,
            MaxInFlight = (uint)Math.Min(Capacity, ProtocolConstants.MaxDurableInFlight),
        };

    /// <summary>
    /// Before a durable subscription is restored on a new connection: takes out of the buffer what the old
    /// connection left there, and returns how many (counted as <see cref="Abandoned"/>). They were not
    /// acknowledged, so the agent delivers them again; left in the buffer they would be doubled, and would
    /// take room the new connection's window counts on.
    /// </summary>
    internal int DiscardBuffered()
    {
        var discarded = 0;
        while (_channel.Reader.TryRead(out _))
        {
            discarded++;
        }

        Interlocked.Add(ref _abandoned, discarded);
        return discarded;
    }

    internal void Bind(object connection, uint id, uint maxInFlight)
    {
        Connection = connection;
        Id = id;
        Volatile.Write(ref _maxInFlight, maxInFlight);
    }

    internal void CountAbandoned() => Interlocked.Increment(ref _abandoned);

    internal long CountStall() => Interlocked.Increment(ref _stalls);

    internal bool TryWrite(BusMessage message) => _channel.Writer.TryWrite(message);

    internal ValueTask<bool> WaitToWriteAsync(CancellationToken cancellationToken) => _channel.Writer.WaitToWriteAsync(cancellationToken);

    /// <summary>Marks the subscription closed; false when it already was.</summary>
    internal bool TryClose(Exception? error = null)
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0)
        {
            return false;
        }

        _channel.Writer.TryComplete(error);
        return true;
    }
}
