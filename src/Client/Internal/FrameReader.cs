using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using DaemonEye.Networking;
using DaemonEye.Protocol;

namespace DaemonEye.Client.Internal;

/// <summary>
/// Reads length-prefixed frames from a socket into one reused buffer: frames are handed out as
/// ranges of that buffer, valid until the next <see cref="FillAsync"/>.
/// </summary>
internal sealed class FrameReader(int maxFrameSize)
{
    private byte[] _buffer = new byte[64 * 1024];
    private int _start;
    private int _end;

    public byte[] Buffer => _buffer;

    /// <summary>Takes the next whole frame, if buffered (cut by <see cref="Framing"/>, as the agent cuts). Throws when its length prefix exceeds the maximum.</summary>
    public bool TryTake(out int offset, out int length)
    {
        offset = 0;
        switch (Framing.TryReadFrame(_buffer.AsSpan(_start, _end - _start), maxFrameSize, out length, out var declared))
        {
            case FrameStatus.Complete:
                offset = _start + Framing.HeaderSize;
                _start = offset + length;
                return true;
            case FrameStatus.TooLarge:
                throw new InvalidDataException($"the agent sent a frame of {declared} bytes; this client accepts at most {maxFrameSize}");
            default:
                return false;
        }
    }

    /// <summary>Receives more bytes; false at end of stream. Pooled, so that a read that waits allocates nothing.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<bool> FillAsync(ReactorSocket socket, CancellationToken cancellationToken)
    {
        if (_start == _end)
        {
            _start = _end = 0;
        }

        var needed = Framing.HeaderSize;
        if (_end - _start >= Framing.HeaderSize)
        {
            needed += (int)Math.Min(BinaryPrimitives.ReadUInt32BigEndian(_buffer.AsSpan(_start)), (uint)maxFrameSize);
        }

        if (_buffer.Length - _start < needed || _buffer.Length - _end < 4096)
        {
            var target = _buffer.Length >= needed + 4096 ? _buffer : new byte[Math.Max(_buffer.Length * 2, needed + 4096)];
            Array.Copy(_buffer, _start, target, 0, _end - _start);
            _end -= _start;
            _start = 0;
            _buffer = target;
        }

        var read = await socket.ReceiveAsync(_buffer.AsMemory(_end), cancellationToken).ConfigureAwait(false);
        if (read == 0)
        {
            return false;
        }

        _end += read;
        return true;
    }

    /// <summary>True when a partial frame is buffered (the stream ended mid-frame if nothing more comes).</summary>
    public bool HasPartialFrame => _end > _start;
}
