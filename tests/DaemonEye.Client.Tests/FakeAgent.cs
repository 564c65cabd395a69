using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Threading.Channels;
using DaemonEye.Protocol;
using DaemonEye.Protocol.V1;
using DaemonEye.Topics;
using Google.Protobuf;

namespace DaemonEye.Client.Tests;

/// <summary>
/// A small in-process stand-in for the agent's gateway, enough to exercise the SDK without the
/// silo: handshake, subscribe/unsubscribe, routing with per-topic sequences, Ping barrier,
/// Dropped. It records what it received and can pause reading or cut every connection.
/// </summary>
internal sealed class FakeAgent : IAsyncDisposable
{
    private readonly Socket _listener;
    private readonly CancellationTokenSource _cts = new();
    private readonly ConcurrentDictionary<int, FakeConnection> _connections = new();
    private readonly ConcurrentDictionary<string, ulong> _sequences = new();
    private readonly Lock _routeGate = new();
    private readonly Task _acceptLoop;
    private int _nextConnection;

    public FakeAgent(string? socketPath = null)
    {
        SocketPath = socketPath ?? Path.Combine(Path.GetTempPath(), $"de-fake-{Guid.NewGuid():N}"[..24] + ".sock");
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(SocketPath));
        _listener.Listen(16);
        _acceptLoop = AcceptAsync();
    }

    public string SocketPath { get; }

    public uint MaxFrameSize { get; init; } = Framing.DefaultMaxFrameSize;

    /// <summary>Every publish received, in arrival order.</summary>
    public Channel<Publish> Received { get; } = Channel.CreateUnbounded<Publish>();

    /// <summary>Frames per socket read, to see write coalescing.</summary>
    public ConcurrentQueue<int> FramesPerRead { get; } = new();

    /// <summary>Hellos received, in order.</summary>
    public ConcurrentQueue<Hello> Hellos { get; } = new();

    /// <summary>Completed with each new connection (replace to wait for the next).</summary>
    public TaskCompletionSource<int> NextConnection { get; set; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>While closed, connections stop reading their sockets.</summary>
    public ManualResetEventSlim ReadGate { get; } = new(initialState: true);

    public int ConnectionCount => _connections.Count;

    public IEnumerable<int> SubscriptionCounts => _connections.Values.Select(c => c.Subscriptions.Count);

    /// <summary>Cuts every connection (the client sees end of stream).</summary>
    public void DropConnections()
    {
        foreach (var connection in _connections.Values)
        {
            connection.Socket.Shutdown(SocketShutdown.Both);
            connection.Socket.Close();
        }
    }

    /// <summary>Sends a frame to every connection.</summary>
    public void Broadcast(Envelope envelope)
    {
        foreach (var connection in _connections.Values)
        {
            connection.Send(envelope);
        }
    }

    private async Task AcceptAsync()
    {
        try
        {
            while (true)
            {
                var socket = await _listener.AcceptAsync(_cts.Token);
                var id = Interlocked.Increment(ref _nextConnection);
                var connection = new FakeConnection(id, socket);
                _connections[id] = connection;
                _ = Task.Run(() => ServeAsync(connection));
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
    }

    private async Task ServeAsync(FakeConnection connection)
    {
        var buffer = new byte[1 << 20];
        var start = 0;
        var end = 0;
        var helloDone = false;
        try
        {
            while (true)
            {
                ReadGate.Wait(_cts.Token);
                if (end == buffer.Length)
                {
                    Array.Copy(buffer, start, buffer, 0, end - start);
                    end -= start;
                    start = 0;
                }

                var n = await connection.Socket.ReceiveAsync(buffer.AsMemory(end), SocketFlags.None, _cts.Token);
                if (n == 0)
                {
                    return;
                }

                end += n;
                var sequence = new System.Buffers.ReadOnlySequence<byte>(buffer, start, end - start);
                var frames = 0;
                while (Framing.TryReadFrame(ref sequence, (int)MaxFrameSize, out var frame, out _) == FrameStatus.Complete)
                {
                    frames++;
                    var envelope = Envelope.Parser.ParseFrom(frame);
                    if (!helloDone)
                    {
                        helloDone = true;
                        Hellos.Enqueue(envelope.Hello);
                        connection.Send(new Envelope
                        {
                            RequestId = envelope.RequestId,
                            Welcome = new Welcome { ProtocolVersion = 1, ConnectionId = $"fake-{connection.Id}", MaxFrameSize = MaxFrameSize, MessageBufferSize = 1000 },
                        });
                        NextConnection.TrySetResult(connection.Id);
                        continue;
                    }

                    Handle(connection, envelope);
                }

                FramesPerRead.Enqueue(frames);
                start = (int)(end - sequence.Length);
                if (start == end)
                {
                    start = end = 0;
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
        finally
        {
            _connections.TryRemove(connection.Id, out _);
            connection.Socket.Dispose();
        }
    }

    private void Handle(FakeConnection connection, Envelope envelope)
    {
        switch (envelope.BodyCase)
        {
            case Envelope.BodyOneofCase.Publish:
                Received.Writer.TryWrite(envelope.Publish);
                lock (_routeGate)
                {
                    var sequence = _sequences.AddOrUpdate(envelope.Publish.Topic, 1, (_, s) => s + 1);
                    foreach (var target in _connections.Values)
                    {
                        var ids = target.Subscriptions.Where(s => TopicRules.Matches(s.Value, envelope.Publish.Topic)).Select(s => s.Key).Order().ToList();
                        if (ids.Count > 0)
                        {
                            target.Send(new Envelope { Deliver = new Deliver { SubscriptionIds = { ids }, Sequence = sequence, Message = envelope.Publish } });
                        }
                    }
                }

                break;
            case Envelope.BodyOneofCase.Subscribe:
                var id = (uint)Interlocked.Increment(ref connection.NextSubscription);
                connection.Subscriptions[id] = envelope.Subscribe.Pattern;
                connection.Send(new Envelope { RequestId = envelope.RequestId, SubscribeAck = new SubscribeAck { SubscriptionId = id, Pattern = envelope.Subscribe.Pattern } });
                break;
            case Envelope.BodyOneofCase.Unsubscribe:
                connection.Send(connection.Subscriptions.TryRemove(envelope.Unsubscribe.SubscriptionId, out _)
                    ? new Envelope { RequestId = envelope.RequestId, UnsubscribeAck = new UnsubscribeAck { SubscriptionId = envelope.Unsubscribe.SubscriptionId } }
                    : new Envelope { RequestId = envelope.RequestId, Error = new Error { Code = ErrorCode.UnknownSubscription, Message = "unknown" } });
                break;
            case Envelope.BodyOneofCase.Ping:
                connection.Send(new Envelope { RequestId = envelope.RequestId, Pong = new Pong { Nonce = envelope.Ping.Nonce } });
                break;
            default:
                connection.Send(new Envelope { RequestId = envelope.RequestId, Error = new Error { Code = ErrorCode.UnexpectedMessage, Message = envelope.BodyCase.ToString() } });
                break;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _cts.CancelAsync();
        ReadGate.Set();
        _listener.Dispose();
        DropConnectionsQuietly();
        await _acceptLoop;
        File.Delete(SocketPath);
        _cts.Dispose();
    }

    private void DropConnectionsQuietly()
    {
        try
        {
            DropConnections();
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }
    }

    private sealed class FakeConnection(int id, Socket socket)
    {
        private readonly Lock _sendGate = new();
        public int NextSubscription;

        public int Id { get; } = id;

        public Socket Socket { get; } = socket;

        public ConcurrentDictionary<uint, string> Subscriptions { get; } = new();

        public void Send(IMessage envelope)
        {
            var frame = Framing.ToFrame(envelope);
            lock (_sendGate)
            {
                try
                {
                    Socket.Send(frame);
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException)
                {
                }
            }
        }
    }
}
