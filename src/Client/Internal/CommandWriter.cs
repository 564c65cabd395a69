using System.Buffers;
using System.Buffers.Binary;
using DaemonEye.Networking;
using DaemonEye.Protocol;
using Google.Protobuf;

namespace DaemonEye.Client.Internal;

/// <summary>How a frame leaves once it is in the <see cref="CommandWriter"/>'s buffer.</summary>
internal enum SendMode
{
    /// <summary>With the writer loop: it is woken if parked, and sends everything buffered in one syscall.</summary>
    Queue,

    /// <summary>On this thread, at once, when the writer loop is parked and the client is not under
    /// load; under load (more than <see cref="CommandWriter.DirectBurst"/> frames less than
    /// <see cref="CommandWriter.DirectWindow"/> apart), with the writer loop, coalesced. Inside a
    /// cork, with the cork's other frames. Publishes and control frames.</summary>
    Auto,

    /// <summary>On this thread, at once, when the writer loop is parked (an RPC frame: no thread
    /// hand-off on the latency path); inside a cork, with the cork's other frames.</summary>
    Direct,
}

/// <summary>
/// The client's one sender (after NATS.Net's <c>CommandWriter</c>): every frame — publish,
/// control, RPC — is encoded into one buffer under <see cref="Gate"/>, then leaves either on the
/// caller's thread, in one non-blocking send, when the writer loop is parked (no thread hand-off),
/// or with the writer loop, which sends everything that has accumulated in one syscall. Idle, a
/// publish is on the wire when PublishAsync returns; under load the writer coalesces (one send
/// per batch is what lets a publisher reach hundreds of thousands of messages a second, and the
/// agent route them a read at a time), and the frames a burst brings wait at most one writer
/// wake-up. The buffer
/// is bounded (<see cref="IsFullLocked"/>): a publisher that outruns the socket waits for room
/// (<see cref="WaitForRoom"/>) instead of losing messages.
/// </summary>
/// <remarks>
/// A <see cref="Cork"/> is an explicit scope the reader opens around the frames of one read:
/// direct frames produced meanwhile on the reader's thread (a collector's inline answers, calls made
/// by code an answer resumed there) wait in the buffer and leave in one send when the scope ends.
/// A direct send the kernel takes only part of leaves its rest in the sending buffer; the writer
/// loop sends that rest before anything else, on the same connection.
/// </remarks>
internal sealed class CommandWriter(int maxPendingBytes, TimeProvider time)
{
    private readonly Lock _gate = new();
    private readonly WriterSignal _writerSignal = new();

    // Everything below is guarded by _gate.
    private ArrayBufferWriter<byte> _pending = new(64 * 1024);
    private ArrayBufferWriter<byte> _sending = new(64 * 1024);
    private int _pendingFrames;
    private int _sendingFrames;
    private int _sendOffset; // bytes of _sending already on the wire
    private bool _writerWaiting;
    private ReactorSocket? _parkedSocket; // the parked writer's socket: where direct sends go
    private bool _corked;
    private TaskCompletionSource? _roomAvailable;
    private long _lastSend; // timestamp (of the client's TimeProvider) of the last send, direct or by the writer
    private int _burst;     // direct sends less than DirectWindow apart, since the last quiet spell

    // The managed thread id of the reader while its cork is open; 0 when none is. Written by the
    // reader only; any other thread reads a value that is never its own id.
    private int _corkThread;

    /// <summary>Frames closer together than this are "under load" once there are more than <see cref="DirectBurst"/> of them.</summary>
    public static readonly TimeSpan DirectWindow = TimeSpan.FromMicroseconds(50);

    /// <summary>Direct sends allowed in a row, less than <see cref="DirectWindow"/> apart, before the writer coalesces.</summary>
    public const int DirectBurst = 4;

    private readonly long _directWindowTicks = (long)(DirectWindow.TotalSeconds * time.TimestampFrequency);

    /// <summary>Sends made on a caller's thread (for tests).</summary>
    internal long DirectSends { get; private set; }

    /// <summary>Sends made by the writer loop (for tests).</summary>
    internal long WriterSends { get; private set; }

    /// <summary>True while the writer loop is parked, waiting for frames (for tests).</summary>
    internal bool IsParked
    {
        get
        {
            lock (_gate)
            {
                return _writerWaiting;
            }
        }
    }

    /// <summary>Guards the buffer; callers that encode into it (<see cref="GetSpanLocked"/>) hold it.</summary>
    public Lock Gate => _gate;

    /// <summary>True while the buffer holds <c>maxPendingBytes</c> or more: a publisher must wait.</summary>
    public bool IsFullLocked => _pending.WrittenCount >= maxPendingBytes;

    /// <summary>True on the reader's thread while its cork is open (the frames of one read are being handled).</summary>
    public bool IsCorkedOnCurrentThread => Volatile.Read(ref _corkThread) == Environment.CurrentManagedThreadId;

    /// <summary>Room to encode a frame of <paramref name="size"/> bytes; <see cref="CommitLocked"/> follows.</summary>
    public Span<byte> GetSpanLocked(int size) => _pending.GetSpan(size);

    /// <summary>Adds the frame just encoded (<paramref name="size"/> bytes) and sends it as <paramref name="mode"/> says.</summary>
    public void CommitLocked(int size, SendMode mode)
    {
        _pending.Advance(size);
        _pendingFrames++;
        if (mode != SendMode.Queue)
        {
            if (_corkThread == Environment.CurrentManagedThreadId)
            {
                _corked = true;
                return;
            }

            if ((mode == SendMode.Direct || MayDirectLocked()) && TrySendDirectLocked())
            {
                return;
            }
        }

        WakeWriterLocked();
    }

    /// <summary>Encodes one envelope as a frame and sends it as <paramref name="mode"/> says.</summary>
    public void Write(IMessage envelope, SendMode mode)
    {
        var size = envelope.CalculateSize();
        lock (_gate)
        {
            var span = _pending.GetSpan(Framing.HeaderSize + size);
            BinaryPrimitives.WriteUInt32BigEndian(span, (uint)size);
            envelope.WriteTo(span.Slice(Framing.HeaderSize, size));
            CommitLocked(Framing.HeaderSize + size, mode);
        }
    }

    /// <summary>Null when the buffer has room; otherwise a task that completes when the writer has taken it.</summary>
    public Task? WaitForRoom()
    {
        lock (_gate)
        {
            if (!IsFullLocked)
            {
                return null;
            }

            _roomAvailable ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _roomAvailable.Task;
        }
    }

    /// <summary>Releases publishers waiting for room (the client failed or was disposed: they re-check and throw).</summary>
    public void ReleaseWaiters()
    {
        lock (_gate)
        {
            _roomAvailable?.TrySetResult();
            _roomAvailable = null;
        }
    }

    /// <summary>Opens the reader's cork on this thread; disposing the scope sends what it held.</summary>
    public CorkScope Cork()
    {
        Volatile.Write(ref _corkThread, Environment.CurrentManagedThreadId);
        return new CorkScope(this);
    }

    private void Uncork()
    {
        lock (_gate)
        {
            Volatile.Write(ref _corkThread, 0);
            if (!_corked)
            {
                return;
            }

            _corked = false;
            if (!TrySendDirectLocked())
            {
                WakeWriterLocked();
            }
        }
    }

    /// <summary>
    /// The connection's writer loop: sends what accumulates, parks when nothing does. Ends when
    /// <paramref name="cancellationToken"/> is cancelled; a failed send throws.
    /// </summary>
    public async Task RunAsync(ReactorSocket socket, CancellationToken cancellationToken)
    {
        try
        {
            while (true)
            {
                TaskCompletionSource? room = null;
                ReadOnlyMemory<byte> data = default;
                lock (_gate)
                {
                    // Running, so not parked (also after a wake-up nobody asked for).
                    _writerWaiting = false;
                    _parkedSocket = null;
                    if (_sending.WrittenCount == 0)
                    {
                        if (_pending.WrittenCount == 0)
                        {
                            _writerWaiting = true;
                            _parkedSocket = socket;
                        }
                        else
                        {
                            (_pending, _sending) = (_sending, _pending);
                            _sendingFrames = _pendingFrames;
                            _pendingFrames = 0;
                            _sendOffset = 0;
                            room = _roomAvailable;
                            _roomAvailable = null;
                        }
                    }

                    // Otherwise the rest of a direct send the kernel took only part of goes first.
                    if (!_writerWaiting)
                    {
                        data = _sending.WrittenMemory[_sendOffset..];
                    }
                }

                if (data.IsEmpty)
                {
                    await _writerSignal.WaitAsync(cancellationToken).ConfigureAwait(false);
                    continue;
                }

                room?.TrySetResult();
                await socket.SendAsync(data, cancellationToken).ConfigureAwait(false);
                lock (_gate)
                {
                    _sending.ResetWrittenCount();
                    _sendingFrames = 0;
                    _sendOffset = 0;
                    _lastSend = time.GetTimestamp();
                    WriterSends++;
                }
            }
        }
        finally
        {
            lock (_gate)
            {
                _writerWaiting = false;
                _parkedSocket = null;
            }
        }
    }

    /// <summary>After the connection's loops have stopped: forgets the frames that were being sent
    /// (they may not have reached the agent) and returns how many. Buffered frames stay for the next connection.</summary>
    public int DropInFlight()
    {
        lock (_gate)
        {
            var lost = _sendingFrames;
            _sendingFrames = 0;
            _sendOffset = 0;
            _sending.ResetWrittenCount();
            return lost;
        }
    }

    /// <summary>False under load: <see cref="DirectBurst"/> direct sends in a row, each less than
    /// <see cref="DirectWindow"/> after the send before it (by anyone), with no quiet spell since.</summary>
    private bool MayDirectLocked()
    {
        if (!_writerWaiting)
        {
            return false;
        }

        if (time.GetTimestamp() - _lastSend >= _directWindowTicks)
        {
            _burst = 0;
        }

        return _burst < DirectBurst;
    }

    /// <summary>
    /// With the writer parked (so the sending buffer is empty), sends the buffered frames on the
    /// parked writer's socket without ever waiting. False when the writer must send them (or the
    /// rest of them) instead.
    /// </summary>
    private bool TrySendDirectLocked()
    {
        if (!_writerWaiting || _parkedSocket is not { } socket || _pendingFrames == 0)
        {
            return false;
        }

        var data = _pending.WrittenSpan;
        // 0: the socket buffer is full; -1: the socket failed, which the writer will meet and report.
        var sent = socket.TrySend(data);
        if (sent <= 0)
        {
            return false;
        }

        if (sent < data.Length)
        {
            // Part of a frame: its rest must follow on this same connection, before anything else.
            (_pending, _sending) = (_sending, _pending);
            _sendingFrames = _pendingFrames;
            _pendingFrames = 0;
            _sendOffset = sent;
            return false;
        }

        _pending.ResetWrittenCount();
        _pendingFrames = 0;
        _burst++;
        DirectSends++;
        _lastSend = time.GetTimestamp();
        _roomAvailable?.TrySetResult();
        _roomAvailable = null;
        return true;
    }

    private void WakeWriterLocked()
    {
        if (_writerWaiting)
        {
            _writerWaiting = false;
            _parkedSocket = null;
            _writerSignal.Release();
        }
    }

    /// <summary>The reader's cork, open from <see cref="Cork"/> until disposed (never across an await).</summary>
    public readonly ref struct CorkScope(CommandWriter writer)
    {
        public void Dispose() => writer.Uncork();
    }
}
