using System.Threading.Channels;

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

    internal BusSubscription(BusClient client, string pattern, int capacity, BusMessageHandler? handler = null)
    {
        _client = client;
        Pattern = pattern;
        Handler = handler;
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

    /// <summary>The handler the reader calls for each message, instead of buffering it; null for a buffered subscription.</summary>
    internal BusMessageHandler? Handler { get; }

    internal object? Connection { get; private set; }

    /// <summary>Every message, in delivery order, until the subscription ends.</summary>
    public IAsyncEnumerable<BusMessage> ReadAllAsync(CancellationToken cancellationToken = default) =>
        _channel.Reader.ReadAllAsync(cancellationToken);

    /// <summary>Stops delivery; after it returns the agent sends nothing more for this subscription.</summary>
    public ValueTask UnsubscribeAsync(CancellationToken cancellationToken = default) => _client.UnsubscribeAsync(this, cancellationToken);

    public ValueTask DisposeAsync() => UnsubscribeAsync(CancellationToken.None);

    internal void Bind(object connection, uint id)
    {
        Connection = connection;
        Id = id;
    }

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
