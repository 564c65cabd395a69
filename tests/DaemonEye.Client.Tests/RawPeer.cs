using System.Buffers;
using System.Net.Sockets;
using DaemonEye.Protocol;
using DaemonEye.Protocol.V1;

namespace DaemonEye.Client.Tests;

/// <summary>
/// A raw Unix-socket peer for the few SDK behaviours the real agent cannot be made to show on
/// demand (each test says which). It has no routing: it accepts one connection, answers the
/// Hello with a Welcome, and then does only what its test asks — read frames, count reads, send
/// a frame. Everything the agent itself does is tested against the real agent in
/// DaemonEye.EndToEnd.Tests.
/// </summary>
internal sealed class RawPeer : IAsyncDisposable
{
    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("de-peer-");
    private readonly Socket _listener = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);

    public RawPeer()
    {
        SocketPath = Path.Combine(_directory.FullName, "bus.sock");
        _listener.Bind(new UnixDomainSocketEndPoint(SocketPath));
        _listener.Listen(1);
    }

    public string SocketPath { get; }

    /// <summary>Accepts one connection, reads its Hello and answers with a Welcome.</summary>
    public async Task<PeerConnection> AcceptAsync(CancellationToken cancellationToken)
    {
        var socket = await _listener.AcceptAsync(cancellationToken);
        var connection = new PeerConnection(socket);
        var hello = await connection.ReadAsync(cancellationToken);
        Assert.Equal(Envelope.BodyOneofCase.Hello, hello.BodyCase);
        connection.Hello = hello.Hello;
        await connection.SendAsync(new Envelope
        {
            RequestId = hello.RequestId,
            Welcome = new Welcome
            {
                ProtocolVersion = ProtocolConstants.Version,
                ConnectionId = "peer-1",
                MaxFrameSize = Framing.DefaultMaxFrameSize,
                MessageBufferSize = 1000,
                Role = hello.Hello.Role,
            },
        }, cancellationToken);
        return connection;
    }

    public ValueTask DisposeAsync()
    {
        _listener.Dispose();
        _directory.Delete(recursive: true);
        return ValueTask.CompletedTask;
    }
}

/// <summary>One accepted connection: frames in, frames out, and how many frames each socket read brought.</summary>
internal sealed class PeerConnection(Socket socket) : IDisposable
{
    private readonly byte[] _buffer = new byte[1 << 20];
    private readonly Queue<Envelope> _parsed = new();
    private int _start;
    private int _end;

    public Hello Hello { get; set; } = null!;

    /// <summary>The socket, for what the tests look at directly (bytes waiting, raw reads and writes).</summary>
    public Socket Socket => socket;

    /// <summary>Frames per socket read, in order.</summary>
    public List<int> FramesPerRead { get; } = [];

    public async Task<Envelope> ReadAsync(CancellationToken cancellationToken)
    {
        while (_parsed.Count == 0)
        {
            if (_end == _buffer.Length)
            {
                Array.Copy(_buffer, _start, _buffer, 0, _end - _start);
                _end -= _start;
                _start = 0;
            }

            var n = await socket.ReceiveAsync(_buffer.AsMemory(_end), SocketFlags.None, cancellationToken);
            if (n == 0)
            {
                throw new EndOfStreamException("the client closed the connection");
            }

            _end += n;
            var sequence = new ReadOnlySequence<byte>(_buffer, _start, _end - _start);
            var frames = 0;
            while (Framing.TryReadFrame(ref sequence, _buffer.Length, out var frame, out _) == FrameStatus.Complete)
            {
                _parsed.Enqueue(Envelope.Parser.ParseFrom(frame));
                frames++;
            }

            FramesPerRead.Add(frames);
            _start = (int)(_end - sequence.Length);
            if (_start == _end)
            {
                _start = _end = 0;
            }
        }

        return _parsed.Dequeue();
    }

    /// <summary>Reads until <paramref name="count"/> frames of <paramref name="body"/> have come (others are skipped).</summary>
    public async Task<List<Envelope>> ReadAsync(Envelope.BodyOneofCase body, int count, CancellationToken cancellationToken)
    {
        var list = new List<Envelope>(count);
        while (list.Count < count)
        {
            var envelope = await ReadAsync(cancellationToken);
            if (envelope.BodyCase == body)
            {
                list.Add(envelope);
            }
        }

        return list;
    }

    public async Task SendAsync(Envelope envelope, CancellationToken cancellationToken) =>
        await socket.SendAsync(Framing.ToFrame(envelope), SocketFlags.None, cancellationToken);

    /// <summary>Sends the envelopes in one write, so that they arrive together.</summary>
    public async Task SendTogetherAsync(IEnumerable<Envelope> envelopes, CancellationToken cancellationToken) =>
        await socket.SendAsync(envelopes.SelectMany(Framing.ToFrame).ToArray(), SocketFlags.None, cancellationToken);

    public void Dispose() => socket.Dispose();
}
