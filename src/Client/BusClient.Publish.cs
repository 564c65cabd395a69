using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Text;
using DaemonEye.Client.Internal;
using DaemonEye.Protocol;
using DaemonEye.Protocol.V1;
using DaemonEye.Protocol.Wire;
using DaemonEye.Topics;

namespace DaemonEye.Client;

/// <summary>Publishing: each publish is encoded straight into the <see cref="CommandWriter"/>'s
/// buffer (no message objects), numbered per topic, and sent as the writer decides. Flush is the
/// barrier that says the agent has routed everything published before it.</summary>
public sealed partial class BusClient
{
    // Guarded by the writer's lock, so that a message's sequence number and its place on the wire agree.
    private readonly Dictionary<string, TopicStream> _streams = new(StringComparer.Ordinal);
    private readonly ulong _idPrefix = BitConverter.ToUInt64(RandomNumberGenerator.GetBytes(8));
    private string? _lastTopic; // the topic of the last publish and its stream: a steady stream skips the lookup
    private TopicStream? _lastStream;
    private ulong _idCounter;
    private int _maxFrameSize = Framing.DefaultMaxFrameSize;

    /// <summary>
    /// Publishes one message. Completes synchronously while the write buffer has room; otherwise
    /// waits until the writer has drained it. Fire-and-forget on the wire: use <see cref="FlushAsync"/>
    /// to know that everything published so far has been routed.
    /// </summary>
    /// <exception cref="TopicFormatException">The topic breaks the topic rules.</exception>
    public ValueTask PublishAsync(string topic, ReadOnlyMemory<byte> payload, PublishOptions? options = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (Volatile.Read(ref _fault) is { } fault)
        {
            return ValueTask.FromException(fault);
        }

        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled(cancellationToken);
        }

        if (options is not null)
        {
            ValidatePublishOptions(options);
        }

        return TryEnqueuePublish(topic, payload.Span, options)
            ? ValueTask.CompletedTask
            : PublishSlowAsync(topic, payload, options, cancellationToken);
    }

    private async ValueTask PublishSlowAsync(string topic, ReadOnlyMemory<byte> payload, PublishOptions? options, CancellationToken cancellationToken)
    {
        while (true)
        {
            // Checked under the writer's lock: if the writer drained the buffer since the failed
            // attempt, retry now; otherwise the writer's next swap completes this wait.
            var wait = _writer.WaitForRoom();
            if (wait is not null)
            {
                await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
            }

            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            if (Volatile.Read(ref _fault) is { } fault)
            {
                throw fault;
            }
            if (TryEnqueuePublish(topic, payload.Span, options))
            {
                return;
            }
        }
    }

    [SkipLocalsInit] // the id buffer is written before it is read
    private bool TryEnqueuePublish(string topic, ReadOnlySpan<byte> payload, PublishOptions? options)
    {
        Span<byte> correlationId = stackalloc byte[ProtocolConstants.MaxCorrelationIdLength * 3];
        var timestamp = options?.Timestamp ?? _time.GetUtcNow();
        var nanos = (ulong)(timestamp.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) * 100;
        lock (_writer.Gate)
        {
            if (_writer.IsFullLocked)
            {
                return false;
            }

            var stream = StreamOf(topic);

            var sequence = options is { SequenceNumber: > 0 } ? options.SequenceNumber : ++stream.Sequence;
            int idLength;
            bool rootIsSelf;
            if (options?.CorrelationId is { Length: > 0 } given)
            {
                idLength = Encoding.UTF8.GetBytes(given, correlationId);
                rootIsSelf = options.RootCorrelationId is null && string.IsNullOrEmpty(options.ParentCorrelationId);
            }
            else
            {
                idLength = FormatCorrelationId(correlationId, _idPrefix, ++_idCounter);
                rootIsSelf = options?.RootCorrelationId is null && string.IsNullOrEmpty(options?.ParentCorrelationId);
            }

            var fields = new PublishFields
            {
                Topic = stream.Utf8,
                Payload = payload,
                CorrelationId = correlationId[..idLength],
                ParentCorrelationId = options?.ParentCorrelationId,
                RootCorrelationId = options?.RootCorrelationId,
                RootIsCorrelationId = rootIsSelf,
                SequenceNumber = sequence,
                WorkflowStage = options?.WorkflowStage,
                Tags = options?.Tags,
                TimestampUnixNanos = nanos,
                ContentType = options?.ContentType,
            };
            var frameSize = PublishFrame.FrameSize(fields, out var correlationSize, out var publishSize, out var envelopeSize);
            if (frameSize - Framing.HeaderSize > _maxFrameSize)
            {
                if (options is not { SequenceNumber: > 0 })
                {
                    stream.Sequence--;
                }

                throw new ArgumentException($"the message on '{topic}' encodes to {frameSize - Framing.HeaderSize} bytes; the agent accepts frames of at most {_maxFrameSize} bytes", nameof(payload));
            }

            var span = _writer.GetSpanLocked(frameSize);
            PublishFrame.Write(span, fields, correlationSize, publishSize, envelopeSize);
            _writer.CommitLocked(frameSize, SendMode.Auto);
        }

        return true;
    }

    /// <summary>The numbering of a topic's stream; a new topic is checked against the rules first. Under the writer's lock.</summary>
    private TopicStream StreamOf(string topic)
    {
        if (ReferenceEquals(topic, _lastTopic))
        {
            return _lastStream!;
        }

        if (!_streams.TryGetValue(topic, out var stream))
        {
            TopicRules.EnsureTopic(topic);
            stream = new TopicStream(Encoding.UTF8.GetBytes(topic));
            _streams[topic] = stream;
        }

        _lastTopic = topic;
        _lastStream = stream;
        return stream;
    }

    /// <summary>Formats a 32-character lowercase hex id: a per-client random prefix and a counter.</summary>
    internal static int FormatCorrelationId(Span<byte> destination, ulong prefix, ulong counter)
    {
        Span<byte> raw = stackalloc byte[16];
        BinaryPrimitives.WriteUInt64BigEndian(raw, prefix);
        BinaryPrimitives.WriteUInt64BigEndian(raw[8..], counter);
        Convert.TryToHexStringLower(raw, destination, out var written);
        return written;
    }

    private static void ValidatePublishOptions(PublishOptions options)
    {
        Check(options.CorrelationId, nameof(options.CorrelationId));
        Check(options.ParentCorrelationId, nameof(options.ParentCorrelationId));
        Check(options.RootCorrelationId, nameof(options.RootCorrelationId));

        static void Check(string? id, string name)
        {
            if (id is not null && id.Length > ProtocolConstants.MaxCorrelationIdLength)
            {
                throw new ArgumentException($"{name} is {id.Length} characters long; at most {ProtocolConstants.MaxCorrelationIdLength} are allowed", name);
            }
        }
    }

    /// <summary>
    /// A barrier: returns once the agent has routed every frame this client sent before the call
    /// (delivered to subscriber buffers or dropped and counted). Sends a Ping and awaits its Pong.
    /// </summary>
    /// <exception cref="BusConnectionException">The connection was lost before the Pong; earlier publishes may be lost.</exception>
    public async Task FlushAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        await FlushCoreAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task FlushCoreAsync(CancellationToken cancellationToken)
    {
        var connection = await WaitConnectedAsync(cancellationToken).ConfigureAwait(false);
        var (id, pending) = _requests.Register(connection);
        _writer.Write(new Envelope { RequestId = id, Ping = new Ping { Nonce = id } }, SendMode.Auto);
        try
        {
            await pending.Reply.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            _requests.Forget(id);
            throw;
        }
    }

    private sealed class TopicStream(byte[] utf8)
    {
        public byte[] Utf8 { get; } = utf8;

        public ulong Sequence { get; set; }
    }
}
