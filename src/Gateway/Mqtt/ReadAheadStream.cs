namespace DaemonEye.Gateway.Mqtt;

/// <summary>
/// A socket stream read through a buffer: MQTTnet reads each packet's fixed header, length and body
/// with separate reads, each a receive syscall on a bare <see cref="System.Net.Sockets.NetworkStream"/>;
/// here one receive fills the buffer with as many packets as the peer has sent. Writes go straight
/// through (MQTTnet writes whole packets and does not flush).
/// </summary>
internal sealed class ReadAheadStream(Stream inner, int size = 64 * 1024) : Stream
{
    private readonly byte[] _buffer = new byte[size];
    private int _start;
    private int _end;

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

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => inner.WriteAsync(buffer, cancellationToken);

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => inner.WriteAsync(buffer, offset, count, cancellationToken);

    public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);

    public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

    public override void Flush() => inner.Flush();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            inner.Dispose();
        }

        base.Dispose(disposing);
    }
}
