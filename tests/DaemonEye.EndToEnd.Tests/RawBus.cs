using System.Buffers;
using System.Net.Sockets;
using DaemonEye.Protocol;
using DaemonEye.Protocol.V1;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>A bus connection framed by hand, for tests that must send what the SDK never would
/// (a collector Hello with any token, an RpcResponse from a non-collector, odd correlation ids).</summary>
internal sealed class RawBus : IAsyncDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);
    private readonly Socket _socket;
    private readonly byte[] _buffer = new byte[4 << 20];
    private int _filled;
    private uint _nextRequestId = 100;

    private RawBus(Socket socket) => _socket = socket;

    /// <summary>The Welcome or Error that answered the Hello.</summary>
    public Envelope HelloReply { get; private set; } = null!;

    public static async Task<RawBus> ConnectAsync(string socketPath, Hello hello)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath));
        var raw = new RawBus(socket);
        hello.ProtocolVersion = ProtocolConstants.Version;
        try
        {
            await raw.SendAsync(new Envelope { RequestId = 1, Hello = hello });
        }
        catch (SocketException)
        {
            // The agent refused the connection on accept (its Error is already in the socket) and closed it.
        }

        raw.HelloReply = await raw.ReadAsync();
        return raw;
    }

    public static Task<RawBus> ConnectAsync(string socketPath, string clientId, Role role, string? token = null, params string[] capabilities)
    {
        var hello = new Hello { ClientId = clientId, Role = role, RegistrationToken = token ?? string.Empty };
        hello.Capabilities.Add(capabilities);
        return ConnectAsync(socketPath, hello);
    }

    public uint NextRequestId() => ++_nextRequestId;

    public async Task SendAsync(Envelope envelope) => await SendRawAsync(Framing.ToFrame(envelope));

    public async Task SendRawAsync(byte[] bytes)
    {
        for (var sent = 0; sent < bytes.Length;)
        {
            sent += await _socket.SendAsync(bytes.AsMemory(sent), SocketFlags.None);
        }
    }

    /// <summary>The next frame from the agent; null when it closed the connection.</summary>
    public async Task<Envelope?> TryReadAsync()
    {
        using var timeout = new CancellationTokenSource(Patience);
        while (true)
        {
            var sequence = new ReadOnlySequence<byte>(_buffer, 0, _filled);
            if (Framing.TryReadFrame(ref sequence, _buffer.Length, out var frame, out _) == FrameStatus.Complete)
            {
                var envelope = Envelope.Parser.ParseFrom(frame);
                var consumed = (int)(_filled - sequence.Length);
                Buffer.BlockCopy(_buffer, consumed, _buffer, 0, _filled - consumed);
                _filled -= consumed;
                return envelope;
            }

            int read;
            try
            {
                read = await _socket.ReceiveAsync(_buffer.AsMemory(_filled), SocketFlags.None, timeout.Token);
            }
            catch (SocketException)
            {
                return null;
            }

            if (read == 0)
            {
                return null;
            }

            _filled += read;
        }
    }

    public async Task<Envelope> ReadAsync() =>
        await TryReadAsync() ?? throw new IOException("the agent closed the connection");

    /// <summary>Sends <paramref name="envelope"/> with a fresh request id, then a Ping; returns every
    /// frame the agent sent up to the Pong (which follows the routing of everything before it).</summary>
    public async Task<List<Envelope>> SendAndSettleAsync(Envelope envelope)
    {
        envelope.RequestId = envelope.RequestId == 0 ? NextRequestId() : envelope.RequestId;
        await SendAsync(envelope);
        return await SettleAsync();
    }

    /// <summary>Pings and returns every frame received before the Pong.</summary>
    public async Task<List<Envelope>> SettleAsync()
    {
        var ping = NextRequestId();
        await SendAsync(new Envelope { RequestId = ping, Ping = new Ping { Nonce = ping } });
        var frames = new List<Envelope>();
        while (true)
        {
            var frame = await ReadAsync();
            if (frame.BodyCase == Envelope.BodyOneofCase.Pong && frame.RequestId == ping)
            {
                return frames;
            }

            frames.Add(frame);
        }
    }

    /// <summary>Publishes and returns the Error the agent answered it with, or null when it routed it.</summary>
    public async Task<Error?> PublishAsync(string topic, CorrelationMetadata? correlation = null, int payloadBytes = 1)
    {
        var publish = new Publish { Topic = topic, Payload = Google.Protobuf.ByteString.CopyFrom(new byte[payloadBytes]) };
        if (correlation is not null)
        {
            publish.Correlation = correlation;
        }

        var id = NextRequestId();
        var frames = await SendAndSettleAsync(new Envelope { RequestId = id, Publish = publish });
        return frames.SingleOrDefault(f => f.BodyCase == Envelope.BodyOneofCase.Error && f.RequestId == id)?.Error;
    }

    /// <summary>Subscribes; the SubscribeAck or Error.</summary>
    public Task<Envelope> SubscribeAsync(string pattern) => SubscribeAsync(new Subscribe { Pattern = pattern });

    /// <summary>Sends <paramref name="subscribe"/> as it is; the SubscribeAck or Error.</summary>
    public async Task<Envelope> SubscribeAsync(Subscribe subscribe)
    {
        var id = NextRequestId();
        var frames = await SendAndSettleAsync(new Envelope { RequestId = id, Subscribe = subscribe });
        return Assert.Single(frames, f => f.RequestId == id);
    }

    /// <summary>Unsubscribes; the UnsubscribeAck or Error.</summary>
    public async Task<Envelope> UnsubscribeAsync(uint subscriptionId)
    {
        var id = NextRequestId();
        var frames = await SendAndSettleAsync(new Envelope { RequestId = id, Unsubscribe = new Unsubscribe { SubscriptionId = subscriptionId } });
        return Assert.Single(frames, f => f.RequestId == id);
    }

    /// <summary>Sends an RPC request and waits for the response with its correlation id.</summary>
    public async Task<RpcResponse> CallAsync(RpcRequest request)
    {
        await SendAsync(new Envelope { RpcRequest = request });
        return await ResponseAsync(request.Correlation.CorrelationId);
    }

    /// <summary>Reads until the RpcResponse with <paramref name="correlationId"/> arrives.</summary>
    public async Task<RpcResponse> ResponseAsync(string correlationId)
    {
        while (true)
        {
            var frame = await ReadAsync();
            if (frame.BodyCase == Envelope.BodyOneofCase.RpcResponse && frame.RpcResponse.Correlation?.CorrelationId == correlationId)
            {
                return frame.RpcResponse;
            }
        }
    }

    public ValueTask DisposeAsync()
    {
        _socket.Dispose();
        return ValueTask.CompletedTask;
    }
}
