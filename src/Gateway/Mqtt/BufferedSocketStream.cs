namespace DaemonEye.Gateway.Mqtt;

/// <summary>
/// A socket stream read through a buffer and written through a coalescing one. Reads: MQTTnet reads
/// each packet's fixed header, length and body with separate reads, each a receive syscall on a bare
/// <see cref="System.Net.Sockets.NetworkStream"/>; here one receive fills the buffer with as many
/// packets as the peer has sent. Writes: MQTTnet's send loop writes one packet at a time and awaits
/// it, so a bare stream makes one send syscall per message; here a write is appended to a buffer and
/// a single sender sends what has gathered while its previous send ran, so a burst of packets goes
/// out in a few sends. Order is kept (one buffer, one sender); a write waits only when
/// <see cref="MaxPendingWrite"/> bytes are already waiting; a failed send fails the next write.
/// Disposal leaves the socket stream open until the sender has sent what was written
/// (<see cref="DrainAsync"/> waits for that), so a CONNACK refusal or a DISCONNECT still goes out.
/// </summary>
internal sealed class BufferedSocketStream(Stream inner, int size = 64 * 1024) : Stream
{
    /// <summary>Bytes written and not yet sent beyond which a write waits for the sender.</summary>
    internal const int MaxPendingWrite = 1024 * 1024;

    private readonly byte[] _buffer = new byte[size];
    private int _start;
    private int _end;

    private readonly Lock _writeGate = new();
    private byte[] _pending = new byte[size];
    private byte[] _sending = new byte[size];
    private int _pendingLength;
    private Task _sender = Task.CompletedTask;
    private bool _sendScheduled;
    private bool _disposed;
    private Exception? _writeError;
    private TaskCompletionSource? _space;

    public override bool CanRead => inner.CanRead;

    public override bool CanSeek => false;

    public override bool CanWrite => inner.CanWrite;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (_start == _end)
        {
            if (buffer.Length >= _buffer.Length)
            {
                return await inner.ReadAsync(buffer, cancellationToken);
            }

            _start = 0;
            _end = await inner.ReadAsync(_buffer, cancellationToken);
            if (_end == 0)
            {
                return 0;
            }
        }

        var count = Math.Min(buffer.Length, _end - _start);
        _buffer.AsSpan(_start, count).CopyTo(buffer.Span);
        _start += count;
        return count;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer, offset, count).GetAwaiter().GetResult();

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        Task? wait;
        lock (_writeGate)
        {
            wait = TryAppend(buffer.Span);
        }

        return wait is null ? ValueTask.CompletedTask : WriteAfterAsync(wait, buffer, cancellationToken);
    }

    private async ValueTask WriteAfterAsync(Task? wait, ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken)
    {
        while (wait is not null)
        {
            await wait.WaitAsync(cancellationToken);
            lock (_writeGate)
            {
                wait = TryAppend(buffer.Span);
            }
        }
    }

    /// <summary>Under the gate: appends and schedules the sender, or returns what to wait for before trying again.</summary>
    private Task? TryAppend(ReadOnlySpan<byte> data)
    {
        if (_writeError is { } error)
        {
            throw new IOException("An earlier write on this connection failed.", error);
        }

        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_pendingLength > 0 && _pendingLength + data.Length > MaxPendingWrite)
        {
            return (_space ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
        }

        if (_pendingLength + data.Length > _pending.Length)
        {
            Array.Resize(ref _pending, Math.Max(_pending.Length * 2, _pendingLength + data.Length));
        }

        data.CopyTo(_pending.AsSpan(_pendingLength));
        _pendingLength += data.Length;
        if (!_sendScheduled)
        {
            _sendScheduled = true;
            _sender = Task.Run(SendAsync, CancellationToken.None);
        }

        return null;
    }

    private async Task SendAsync()
    {
        while (true)
        {
            int length;
            TaskCompletionSource? space;
            lock (_writeGate)
            {
                length = _pendingLength;
                space = _space;
                _space = null;
                if (length == 0)
                {
                    _sendScheduled = false;
                    if (_disposed)
                    {
                        inner.Dispose();
                    }
                }
                else
                {
                    (_pending, _sending) = (_sending, _pending);
                    _pendingLength = 0;
                }
            }

            space?.TrySetResult();
            if (length == 0)
            {
                return;
            }

            try
            {
                await inner.WriteAsync(_sending.AsMemory(0, length));
            }
            catch (Exception ex) when (ex is IOException or ObjectDisposedException or System.Net.Sockets.SocketException)
            {
                lock (_writeGate)
                {
                    _writeError = ex;
                    _pendingLength = 0;
                    _sendScheduled = false;
                    space = _space;
                    _space = null;
                    if (_disposed)
                    {
                        inner.Dispose();
                    }
                }

                space?.TrySetResult();
                return;
            }
        }
    }

    /// <summary>Completes once everything written has been sent (or a send failed), or when <paramref name="cancellationToken"/> fires.</summary>
    public async Task DrainAsync(CancellationToken cancellationToken)
    {
        Task sender;
        lock (_writeGate)
        {
            sender = _sender;
        }

        try
        {
            await sender.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The peer does not read: closing the socket ends the send.
        }
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override async Task FlushAsync(CancellationToken cancellationToken)
    {
        await DrainAsync(cancellationToken);
        cancellationToken.ThrowIfCancellationRequested();
        lock (_writeGate)
        {
            if (_writeError is { } error)
            {
                throw new IOException("An earlier write on this connection failed.", error);
            }
        }
    }

    public override void Flush() => FlushAsync(CancellationToken.None).GetAwaiter().GetResult();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            bool sending;
            lock (_writeGate)
            {
                _disposed = true;
                sending = _sendScheduled;
            }

            // With a send under way the sender closes the socket stream once it has sent the rest.
            if (!sending)
            {
                inner.Dispose();
            }
        }

        base.Dispose(disposing);
    }
}
