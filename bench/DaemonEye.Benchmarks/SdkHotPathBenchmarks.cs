using System.Net.Sockets;
using BenchmarkDotNet.Attributes;
using DaemonEye.Client;
using DaemonEye.Protocol;
using DaemonEye.Protocol.V1;
using DaemonEye.Protocol.Wire;
using Google.Protobuf;

namespace DaemonEye.Benchmarks;

/// <summary>
/// The SDK's per-message paths, with their allocation per message (MemoryDiagnoser):
/// encoding a Publish frame and decoding a Deliver frame with the shared codec
/// (src/Abstractions/Protocol/Wire), and <see cref="BusClient.PublishAsync"/> whole, into a real
/// Unix socket whose other end a thread drains (the agent's handshake answered by hand). One
/// operation is one message. The receive path's whole loop (socket, decode, handler) is measured
/// for allocation by tests/DaemonEye.Client.Tests/AllocationTests.cs.
/// </summary>
/// <remarks>Not sealed: BenchmarkDotNet derives from benchmark classes.</remarks>
[MemoryDiagnoser]
public class SdkHotPathBenchmarks
{
    private const int Batch = 1024;
    private static readonly byte[] Topic = "events.bench.sdk"u8.ToArray();
    private readonly byte[] _payload = new byte[64];
    private readonly byte[] _id = "0123456789abcdef0123456789abcdef"u8.ToArray();
    private readonly byte[] _frameBuffer = new byte[4096];
    private readonly List<uint> _ids = [];
    private byte[] _deliver = null!;
    private DirectoryInfo _directory = null!;
    private Socket _listener = null!;
    private Socket _peer = null!;
    private Thread _drain = null!;
    private BusClient _client = null!;

    [GlobalSetup]
    public void Setup()
    {
        var publish = new Publish
        {
            Topic = "events.bench.sdk",
            Payload = ByteString.CopyFrom(_payload),
            Correlation = new CorrelationMetadata { CorrelationId = "0123456789abcdef0123456789abcdef", RootCorrelationId = "0123456789abcdef0123456789abcdef", SequenceNumber = 1 },
            TimestampUnixNanos = 1_764_000_000_000_000_000,
        };
        _deliver = new Envelope { Deliver = new Deliver { SubscriptionIds = { 1 }, Sequence = 12345, Message = publish } }.ToByteArray();

        // A peer that answers the Hello and then reads and discards everything.
        _directory = Directory.CreateTempSubdirectory("de-bench-sdk-");
        var path = Path.Combine(_directory.FullName, "bus.sock");
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(path));
        _listener.Listen(1);
        _drain = new Thread(() =>
        {
            _peer = _listener.Accept();
            var buffer = new byte[1 << 20];
            var n = _peer.Receive(buffer);
            var hello = Envelope.Parser.ParseFrom(buffer.AsSpan(Framing.HeaderSize, n - Framing.HeaderSize));
            _peer.Send(Framing.ToFrame(new Envelope
            {
                RequestId = hello.RequestId,
                Welcome = new Welcome { ProtocolVersion = ProtocolConstants.Version, ConnectionId = "bench", MaxFrameSize = Framing.DefaultMaxFrameSize, Role = hello.Hello.Role },
            }));
            try
            {
                while (_peer.Receive(buffer) > 0)
                {
                }
            }
            catch (SocketException)
            {
            }
        })
        { IsBackground = true };
        _drain.Start();
        _client = BusClient.ConnectAsync(new BusClientOptions { SocketPath = path, ClientId = "bench-sdk", AutoReconnect = false, DisposeTimeout = TimeSpan.Zero })
            .GetAwaiter().GetResult();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _client.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _peer.Dispose();
        _listener.Dispose();
        _drain.Join();
        _directory.Delete(recursive: true);
    }

    [Benchmark(OperationsPerInvoke = Batch, Description = "PublishFrame: size + encode, 64 B payload")]
    public int EncodePublish()
    {
        var written = 0;
        for (var i = 0; i < Batch; i++)
        {
            var fields = new PublishFields
            {
                Topic = Topic,
                Payload = _payload,
                CorrelationId = _id,
                RootIsCorrelationId = true,
                SequenceNumber = (ulong)i + 1,
                TimestampUnixNanos = 1_764_000_000_000_000_000,
            };
            _ = PublishFrame.FrameSize(fields, out var c, out var p, out var e);
            written += PublishFrame.Write(_frameBuffer, fields, c, p, e);
        }

        return written;
    }

    [Benchmark(OperationsPerInvoke = Batch, Description = "DeliverFrame.TryDecode + PublishFrame.TryReadLayout")]
    public long DecodeDeliver()
    {
        var sum = 0L;
        for (var i = 0; i < Batch; i++)
        {
            if (DeliverFrame.TryDecode(_deliver, _ids, out var sequence, out var start, out var length) == DeliverDecode.Deliver
                && PublishFrame.TryReadLayout(_deliver.AsSpan(start, length), out var layout))
            {
                sum += (long)sequence + layout.Payload.End.Value + _ids[0];
            }
        }

        return sum;
    }

    [Benchmark(OperationsPerInvoke = Batch, Description = "BusClient.PublishAsync into a socket, 64 B payload")]
    public void PublishAsync()
    {
        for (var i = 0; i < Batch; i++)
        {
            var publish = _client.PublishAsync("events.bench.sdk", _payload);
            if (!publish.IsCompletedSuccessfully)
            {
                publish.AsTask().GetAwaiter().GetResult(); // the buffer was full: wait for the writer
            }
        }
    }
}
