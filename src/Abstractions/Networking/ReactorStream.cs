namespace DaemonEye.Networking;

/// <summary>
/// A <see cref="ReactorSocket"/> as an asynchronous-only <see cref="Stream"/>, for
/// <c>PipeReader.Create</c> and <c>PipeWriter.Create</c>. It does not own the socket. The
/// synchronous members throw <see cref="NotSupportedException"/>: blocking a thread on the
/// reactor could block the reactor itself.
/// </summary>
public sealed class ReactorStream(ReactorSocket socket) : Stream
{
    private const string AsyncOnly = "this stream is asynchronous only; use ReadAsync and WriteAsync";

    public override bool CanRead => true;

    public override bool CanWrite => true;

    public override bool CanSeek => false;

    public override long Length => throw new NotSupportedException("a socket stream has no length");

    public override long Position
    {
        get => throw new NotSupportedException("a socket stream has no position");
        set => throw new NotSupportedException("a socket stream has no position");
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
        socket.ReceiveAsync(buffer, cancellationToken);

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        socket.ReceiveAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) =>
        socket.SendAsync(buffer, cancellationToken);

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        socket.SendAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public override void Flush()
    {
        // Every write is on the wire (or failed) when WriteAsync completes: nothing is buffered here.
    }

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException(AsyncOnly);

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException(AsyncOnly);

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException("a socket stream cannot seek");

    public override void SetLength(long value) => throw new NotSupportedException("a socket stream has no length");
}
