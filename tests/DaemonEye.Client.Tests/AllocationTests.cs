using System.Buffers;
using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using System.Reflection;
using System.Runtime.CompilerServices;
using DaemonEye.Client.Internal;
using DaemonEye.Protocol;
using DaemonEye.Protocol.V1;
using DaemonEye.Protocol.Wire;

namespace DaemonEye.Client.Tests;

/// <summary>Runs alone (no other test allocates meanwhile): the test reads the process's allocation counter.</summary>
[CollectionDefinition(nameof(AllocationTests), DisableParallelization = true)]
public sealed class AllocationCollection;

/// <summary>
/// "No allocation per message" for the SDK's hot paths, measured on real sockets: a client publishes
/// a steady stream to a peer that echoes each Publish back as a Deliver for the client's handler
/// subscription (the agent's job, done here by a loop that allocates nothing itself, so that the
/// process's allocation counter sees the client alone). The agent cannot be used: it is another
/// process, and its echo is not the point.
/// </summary>
[Collection(nameof(AllocationTests))]
public sealed class AllocationTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    // window 1: each message is published, read and handled alone (one send, one wake-up and one
    // read each: the low-rate case); 1,000: many messages per send and per read.
    [Theory]
    [InlineData(1, 20_000)]
    [InlineData(1_000, 200_000)]
    public async Task Publishing_and_receiving_a_steady_stream_allocates_nothing_per_message(int window, int messages)
    {
        using var patience = new CancellationTokenSource(Patience);
        using var peer = new EchoPeer();
        // A small buffer reaches its working size in the warm-up (a buffer that grows later allocates).
        var client = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = peer.SocketPath, ClientId = "allocations", AutoReconnect = false, DisposeTimeout = TimeSpan.Zero, MaxPendingBytes = 256 * 1024 }, patience.Token);
        await using var _ = client;

        var received = 0L;
        var target = long.MaxValue;
        var outOfOrder = 0L;
        var signal = new WriterSignal(); // a reusable wait, so that the test's own waiting allocates nothing
        await client.SubscribeAsync("events.alloc", (in BusDelivery d) =>
        {
            if (BinaryPrimitives.ReadInt64LittleEndian(d.Payload) != received)
            {
                outOfOrder++;
            }

            if (++received == Volatile.Read(ref target))
            {
                signal.Release();
            }
        }, patience.Token);
        var payload = new byte[64];

        // Warm-up: buffers grow to their working size, the JIT compiles what runs.
        await RunAsync(20_000);

        var before = GC.GetTotalAllocatedBytes(precise: true);
        await RunAsync(messages);
        var allocated = GC.GetTotalAllocatedBytes(precise: true) - before;

        Assert.Equal(20_000 + messages, Volatile.Read(ref received));
        Assert.Equal(0, Volatile.Read(ref outOfOrder));
        Assert.Equal(0, peer.Failures);
        // One allocation per message would be at least 24 bytes each. A Debug build of the SDK
        // allocates every async method's state machine on each call (the compiler makes it a class
        // there), so the bound holds for an optimized build only:
        // dotnet test -c Release tests/DaemonEye.Client.Tests --filter AllocationTests
        if (typeof(BusClient).Assembly.GetCustomAttribute<DebuggableAttribute>()?.IsJITOptimizerDisabled != true)
        {
            Assert.True(allocated < messages, $"{allocated:N0} bytes allocated for {messages:N0} messages published and received ({(double)allocated / messages:0.00} per message)");
        }

        // In windows, each echoed before the next is published: the steady state, not backpressure
        // (a publish that finds the buffer full waits, and waiting allocates).
        async ValueTask RunAsync(int count)
        {
            for (var sent = 0; sent < count; sent += window)
            {
                await RoundAsync(Math.Min(window, count - sent));
            }
        }

        [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
        async ValueTask RoundAsync(int count)
        {
            var first = Volatile.Read(ref received);
            Volatile.Write(ref target, first + count);
            for (var i = 0; i < count; i++)
            {
                BinaryPrimitives.WriteInt64LittleEndian(payload, first + i);
                await client.PublishAsync("events.alloc", payload);
            }

            await signal.WaitAsync(patience.Token);
        }
    }

    /// <summary>
    /// The agent's part, on its own thread with blocking socket calls that allocate nothing: accepts
    /// one client, answers its Hello and its one Subscribe (id 1), then turns each Publish into a
    /// Deliver for subscription 1 (the shared codec's writer) and sends what one read produced in
    /// one write.
    /// </summary>
    private sealed class EchoPeer : IDisposable
    {
        private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("de-alloc-");
        private readonly Socket _listener = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        private readonly Thread _thread;
        private readonly byte[] _in = new byte[1 << 20];
        private readonly ArrayBufferWriter<byte> _out = new(4 << 20);
        private readonly uint[] _ids = [1];
        private Socket? _socket;
        private int _failures;
        private int _end;

        public EchoPeer()
        {
            SocketPath = Path.Combine(_directory.FullName, "bus.sock");
            _listener.Bind(new UnixDomainSocketEndPoint(SocketPath));
            _listener.Listen(1);
            _thread = new Thread(Run) { IsBackground = true, Name = "echo-peer" };
            _thread.Start();
        }

        public string SocketPath { get; }

        public int Failures => Volatile.Read(ref _failures);

        public void Dispose()
        {
            _listener.Dispose();
            try
            {
                Volatile.Read(ref _socket)?.Shutdown(SocketShutdown.Both);
            }
            catch (SocketException)
            {
            }

            _thread.Join();
            _socket?.Dispose();
            _directory.Delete(recursive: true);
        }

        private void Run()
        {
            try
            {
                var socket = _listener.Accept();
                Volatile.Write(ref _socket, socket);
                var hello = Envelope.Parser.ParseFrom(ReadFrame(socket));
                socket.Send(Framing.ToFrame(new Envelope
                {
                    RequestId = hello.RequestId,
                    Welcome = new Welcome { ProtocolVersion = ProtocolConstants.Version, ConnectionId = "echo", MaxFrameSize = Framing.DefaultMaxFrameSize, MessageBufferSize = 1000, Role = hello.Hello.Role },
                }));
                var subscribe = Envelope.Parser.ParseFrom(ReadFrame(socket));
                socket.Send(Framing.ToFrame(new Envelope { RequestId = subscribe.RequestId, SubscribeAck = new SubscribeAck { SubscriptionId = 1, Pattern = subscribe.Subscribe.Pattern } }));
                Echo(socket);
            }
            catch (SocketException)
            {
                // Shut down by Dispose.
            }
            catch (ObjectDisposedException)
            {
            }
        }

        /// <summary>One whole frame's envelope (only before the echo starts: the client then sends one frame at a time).</summary>
        private byte[] ReadFrame(Socket socket)
        {
            while (_end < Framing.HeaderSize || _end < Framing.HeaderSize + (int)BinaryPrimitives.ReadUInt32BigEndian(_in))
            {
                var n = socket.Receive(_in.AsSpan(_end), SocketFlags.None);
                if (n == 0)
                {
                    throw new SocketException((int)SocketError.ConnectionReset);
                }

                _end += n;
            }

            var length = (int)BinaryPrimitives.ReadUInt32BigEndian(_in);
            var envelope = _in.AsSpan(Framing.HeaderSize, length).ToArray();
            _in.AsSpan(Framing.HeaderSize + length, _end - Framing.HeaderSize - length).CopyTo(_in);
            _end -= Framing.HeaderSize + length;
            return envelope;
        }

        private void Echo(Socket socket)
        {
            var sequence = 0UL;
            while (true)
            {
                var n = socket.Receive(_in.AsSpan(_end), SocketFlags.None);
                if (n == 0)
                {
                    return;
                }

                _end += n;
                var start = 0;
                while (_end - start >= Framing.HeaderSize)
                {
                    var length = (int)BinaryPrimitives.ReadUInt32BigEndian(_in.AsSpan(start));
                    if (_end - start - Framing.HeaderSize < length)
                    {
                        break;
                    }

                    var envelope = _in.AsSpan(start + Framing.HeaderSize, length);
                    if (PublishFrame.Scan(envelope, out _, out var publish, out _) == PublishScan.Publish)
                    {
                        DeliverFrame.Write(_out, _ids, ++sequence, envelope[publish]);
                    }
                    else
                    {
                        Interlocked.Increment(ref _failures);
                    }

                    start += Framing.HeaderSize + length;
                }

                _in.AsSpan(start, _end - start).CopyTo(_in);
                _end -= start;
                var data = _out.WrittenSpan;
                while (!data.IsEmpty)
                {
                    data = data[socket.Send(data, SocketFlags.None)..];
                }

                _out.ResetWrittenCount();
            }
        }
    }
}
