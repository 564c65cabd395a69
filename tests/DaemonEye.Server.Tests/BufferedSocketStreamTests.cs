using System.Net.Sockets;
using DaemonEye.Gateway.Mqtt;

namespace DaemonEye.Server.Tests;

/// <summary>
/// The MQTT listener's socket stream (src/Gateway/Mqtt/BufferedSocketStream.cs) over a real Unix socket
/// pair: reads served from one receive, writes coalesced by one sender in order, a write that waits once
/// 1 MiB is pending, a failed send failing the next write, and disposal that sends what was written
/// before the socket closes. The agent's side of the socket is wrapped in <see cref="GatedStream"/>,
/// which passes everything through and can hold its first send, so the tests decide when the sender
/// runs instead of racing it.
/// </summary>
public sealed class BufferedSocketStreamTests : IAsyncLifetime
{
    private readonly string _directory = Directory.CreateTempSubdirectory("de-bss-").FullName;

    /// <summary>Fails a test that would otherwise hang on a send or receive that never completes.</summary>
    private readonly CancellationTokenSource _timeout = new(TimeSpan.FromSeconds(30));
    private Socket _agent = null!;
    private Socket _peer = null!;

    public async Task InitializeAsync()
    {
        var path = Path.Combine(_directory, "s.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        _peer = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        var accept = listener.AcceptAsync();
        await _peer.ConnectAsync(new UnixDomainSocketEndPoint(path));
        _agent = await accept;
    }

    public Task DisposeAsync()
    {
        _timeout.Dispose();
        _agent.Dispose();
        _peer.Dispose();
        Directory.Delete(_directory, recursive: true);
        return Task.CompletedTask;
    }

    [Fact]
    public async Task Writes_made_while_a_send_runs_go_out_together_and_in_order()
    {
        var gated = new GatedStream(new NetworkStream(_agent, ownsSocket: false), holdFirstWrite: true);
        await using var stream = new BufferedSocketStream(gated);
        var expected = Packets(1_000, 64);

        for (var i = 0; i < 1_000; i++)
        {
            var write = stream.WriteAsync(expected.AsMemory(i * 64, 64), _timeout.Token);
            Assert.True(write.IsCompletedSuccessfully, $"write {i} waited with {i * 64} bytes pending");
            if (i == 0)
            {
                await gated.FirstWriteStarted.WaitAsync(_timeout.Token);
            }
        }

        var reading = ReadExactlyAsync(_peer, expected.Length);
        gated.Release();
        await stream.FlushAsync(_timeout.Token);

        Assert.Equal(expected, await reading);
        // The first packet was sent alone (the sender started on it); the other 999 gathered while that send was held.
        Assert.Equal(2, gated.Writes);
    }

    [Fact]
    public async Task A_write_waits_once_a_mebibyte_is_pending_and_goes_on_when_the_sender_catches_up()
    {
        var gated = new GatedStream(new NetworkStream(_agent, ownsSocket: false), holdFirstWrite: true);
        await using var stream = new BufferedSocketStream(gated);
        const int Chunk = 64 * 1024;
        var chunks = (BufferedSocketStream.MaxPendingWrite / Chunk) + 1;
        var expected = Packets(1 + (chunks * Chunk / 64), 64).AsMemory(0, 1 + (chunks * Chunk));

        await stream.WriteAsync(expected[..1], _timeout.Token);
        await gated.FirstWriteStarted.WaitAsync(_timeout.Token);
        for (var i = 0; i < chunks - 1; i++)
        {
            var write = stream.WriteAsync(expected.Slice(1 + (i * Chunk), Chunk), _timeout.Token);
            Assert.True(write.IsCompletedSuccessfully, $"chunk {i} waited with {i * Chunk} bytes pending");
        }

        var last = stream.WriteAsync(expected.Slice(1 + ((chunks - 1) * Chunk), Chunk), _timeout.Token).AsTask();
        Assert.False(last.IsCompleted, "the write past 1 MiB pending did not wait");

        var reading = ReadExactlyAsync(_peer, expected.Length);
        gated.Release();
        await last.WaitAsync(_timeout.Token);
        await stream.FlushAsync(_timeout.Token);

        Assert.Equal(expected.ToArray(), await reading);
    }

    [Fact]
    public async Task A_failed_send_fails_the_next_write_and_the_flush()
    {
        await using var stream = new BufferedSocketStream(new NetworkStream(_agent, ownsSocket: false));
        _peer.Close();

        await stream.WriteAsync(new byte[64], _timeout.Token);
        var flush = await Assert.ThrowsAsync<IOException>(() => stream.FlushAsync(_timeout.Token));
        Assert.Equal("An earlier write on this connection failed.", flush.Message);
        Assert.NotNull(flush.InnerException);

        var next = await Assert.ThrowsAsync<IOException>(async () => await stream.WriteAsync(new byte[64], _timeout.Token));
        Assert.Equal("An earlier write on this connection failed.", next.Message);
    }

    [Fact]
    public async Task Disposal_sends_what_was_written_before_the_socket_closes()
    {
        var gated = new GatedStream(new NetworkStream(_agent, ownsSocket: true), holdFirstWrite: true);
        var stream = new BufferedSocketStream(gated);
        var expected = Packets(2_000, 64);

        await stream.WriteAsync(expected.AsMemory(0, 64), _timeout.Token);
        await gated.FirstWriteStarted.WaitAsync(_timeout.Token);
        await stream.WriteAsync(expected.AsMemory(64), _timeout.Token);
        await stream.DisposeAsync();
        Assert.False(gated.Disposed, "the socket stream was closed with a send under way");

        var reading = ReadToEndAsync(_peer);
        gated.Release();
        await stream.DrainAsync(_timeout.Token);

        Assert.Equal(expected, await reading);
        Assert.True(gated.Disposed);
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await stream.WriteAsync(new byte[1], _timeout.Token));
    }

    [Fact]
    public async Task Packets_sent_together_are_read_from_one_receive()
    {
        var gated = new GatedStream(new NetworkStream(_agent, ownsSocket: false), holdFirstWrite: false);
        await using var stream = new BufferedSocketStream(gated);
        var sent = Packets(3, 5);
        _peer.Send(sent);

        var received = new byte[sent.Length];
        var offset = 0;
        foreach (var part in new[] { 1, 1, 3, 10 })
        {
            var n = await stream.ReadAsync(received.AsMemory(offset, part), _timeout.Token);
            Assert.Equal(part, n);
            offset += n;
        }

        Assert.Equal(sent, received);
        Assert.Equal(1, gated.Reads);

        _peer.Shutdown(SocketShutdown.Send);
        Assert.Equal(0, await stream.ReadAsync(new byte[8], _timeout.Token));
    }

    /// <summary><paramref name="count"/> packets of <paramref name="size"/> bytes, each filled with its own sequence byte.</summary>
    private static byte[] Packets(int count, int size)
    {
        var bytes = new byte[count * size];
        for (var i = 0; i < count; i++)
        {
            bytes.AsSpan(i * size, size).Fill((byte)(i * 31));
            bytes[i * size] = (byte)(i >> 8);
        }

        return bytes;
    }

    private static Task<byte[]> ReadExactlyAsync(Socket socket, int length) => Task.Run(async () =>
    {
        var bytes = new byte[length];
        var offset = 0;
        while (offset < length)
        {
            var n = await socket.ReceiveAsync(bytes.AsMemory(offset), SocketFlags.None);
            Assert.NotEqual(0, n);
            offset += n;
        }

        return bytes;
    });

    private static Task<byte[]> ReadToEndAsync(Socket socket) => Task.Run(async () =>
    {
        var all = new MemoryStream();
        var buffer = new byte[64 * 1024];
        int n;
        while ((n = await socket.ReceiveAsync(buffer, SocketFlags.None)) > 0)
        {
            all.Write(buffer, 0, n);
        }

        return all.ToArray();
    });

    /// <summary>
    /// Passes reads and writes to the real socket stream and counts them; with <c>holdFirstWrite</c> its first
    /// write waits for <see cref="Release"/> before it sends, so writes made meanwhile are known to be pending.
    /// </summary>
    private sealed class GatedStream(Stream inner, bool holdFirstWrite) : Stream
    {
        private readonly TaskCompletionSource _gate = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource _firstWriteStarted = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _writes;
        private int _reads;

        public Task FirstWriteStarted => _firstWriteStarted.Task;

        public int Writes => Volatile.Read(ref _writes);

        public int Reads => Volatile.Read(ref _reads);

        public bool Disposed { get; private set; }

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public void Release() => _gate.TrySetResult();

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (Interlocked.Increment(ref _writes) == 1 && holdFirstWrite)
            {
                _firstWriteStarted.TrySetResult();
                await _gate.Task;
            }

            await inner.WriteAsync(buffer, cancellationToken);
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            Interlocked.Increment(ref _reads);
            return inner.ReadAsync(buffer, cancellationToken);
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                Disposed = true;
                inner.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}
