using System.Globalization;
using System.Net.Sockets;
using DaemonEye.Networking;
using Microsoft.Extensions.Time.Testing;

namespace DaemonEye.Tests.Networking;

/// <summary>Real connected Unix stream sockets, one end (or both) on a reactor of the test's own.</summary>
public sealed class ReactorSocketTests : IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20); // a hang fails the test instead of the run
    private static readonly SocketReactor PoolReactor = new(inlineReads: false);
    private static readonly SocketReactor InlineReactor = new(inlineReads: true);
    private static readonly SocketReactor PollingReactor = new(inlineReads: false) { BusyPoll = TimeSpan.FromMicroseconds(200) };
    private readonly string _dir = Directory.CreateTempSubdirectory("de-reactor-").FullName;
    private readonly List<IDisposable> _owned = [];

    public void Dispose()
    {
        foreach (var owned in _owned)
        {
            owned.Dispose();
        }

        Directory.Delete(_dir, recursive: true);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Every_byte_of_many_small_exchanges_arrives_in_order(bool busyPolling)
    {
        var (a, b) = Pair();
        var reactor = busyPolling ? PollingReactor : PoolReactor;
        var left = Own(new ReactorSocket(a, reactor));
        var right = Own(new ReactorSocket(b, reactor));

        // Ping-pong with waits on both sides: each receive usually finds nothing and waits for the
        // next edge, so a lost wake-up would hang here and a lost byte would break the count.
        var echo = Task.Run(async () =>
        {
            var buffer = new byte[64];
            while (true)
            {
                var n = await right.ReceiveAsync(buffer);
                if (n == 0)
                {
                    return;
                }

                await right.SendAsync(buffer.AsMemory(0, n));
            }
        });

        var reply = new byte[64];
        for (var i = 0; i < 5_000; i++)
        {
            var message = BitConverter.GetBytes(i);
            await left.SendAsync(message);
            var got = 0;
            while (got < message.Length)
            {
                got += await left.ReceiveAsync(reply.AsMemory(got)).AsTask().WaitAsync(Patience);
            }

            Assert.Equal(i, BitConverter.ToInt32(reply));
        }

        left.Socket.Shutdown(SocketShutdown.Send);
        await echo.WaitAsync(Patience);
    }

    [Fact]
    public async Task Bytes_and_the_end_of_the_stream_that_came_with_one_edge_are_both_read()
    {
        var (a, b) = Pair();
        a.Send("hello"u8);
        a.Shutdown(SocketShutdown.Send);
        var reader = Own(new ReactorSocket(b, PoolReactor));
        // Let the reactor take the one edge first: the short read that follows must not wait for
        // another, since the end of the stream is still to be read and no edge will announce it.
        while (reader.ReadEdges == 0)
        {
            await Task.Yield();
        }

        var buffer = new byte[16];
        var n = await reader.ReceiveAsync(buffer).AsTask().WaitAsync(Patience);
        Assert.Equal("hello", System.Text.Encoding.ASCII.GetString(buffer, 0, n));
        Assert.Equal(0, await reader.ReceiveAsync(buffer).AsTask().WaitAsync(Patience));
        Assert.Equal(1, reader.ReadEdges);
        a.Dispose();
    }

    [Fact]
    public async Task Bytes_whose_edge_came_between_an_empty_receive_and_its_wait_are_read()
    {
        var (a, b) = Pair();
        Own(a);
        var reader = Own(new ReactorSocket(b, PoolReactor));
        var once = true;
        reader.BetweenReceiveAndWait = () =>
        {
            if (!once)
            {
                return;
            }

            // The bytes arrive, and the reactor counts their edge, after the receive found nothing
            // but before the wait is armed: nothing would ever wake that wait.
            once = false;
            var before = reader.ReadEdges;
            a.Send("late"u8);
            SpinWait.SpinUntil(() => reader.ReadEdges > before, Patience);
        };

        var buffer = new byte[16];
        Assert.Equal(4, await reader.ReceiveAsync(buffer).AsTask().WaitAsync(Patience));
        Assert.False(once, "the receive never met an empty socket");
    }

    [Fact]
    public async Task A_socket_asks_for_writability_only_while_a_send_waits_for_buffer_space()
    {
        var (a, b) = Pair();
        var writer = Own(new ReactorSocket(a, PoolReactor));
        Own(b);
        Assert.Equal(SocketReactor.ReadInterest, Registration(a));

        // More than the socket buffers hold: the send must wait until the peer reads.
        var data = new byte[8 * 1024 * 1024];
        new Random(7).NextBytes(data);
        var send = writer.SendAsync(data).AsTask();
        while (!send.IsCompleted && Registration(a) != SocketReactor.WriteInterest)
        {
            await Task.Yield();
        }

        Assert.False(send.IsCompleted, "the send finished before the peer read anything");
        Assert.Equal(SocketReactor.WriteInterest, Registration(a));

        var received = new byte[data.Length];
        for (var got = 0; got < received.Length;)
        {
            got += await b.ReceiveAsync(received.AsMemory(got));
        }

        await send.WaitAsync(Patience);
        Assert.Equal(data, received);

        // Withdrawn at the first writable edge that finds no send waiting: b's read of a small
        // send makes one.
        await writer.SendAsync("more"u8.ToArray());
        var small = new byte[16];
        Assert.Equal(4, await b.ReceiveAsync(small));
        Assert.True(SpinWait.SpinUntil(() => Registration(a) == SocketReactor.ReadInterest, Patience), "writability stayed asked for");
    }

    [Fact]
    public async Task A_cancelled_receive_throws_and_the_next_receive_still_gets_the_data()
    {
        var (a, b) = Pair();
        var reader = Own(new ReactorSocket(b, PoolReactor));
        Own(a);
        using var cts = new CancellationTokenSource();
        var buffer = new byte[16];
        var pending = reader.ReceiveAsync(buffer, cts.Token).AsTask();
        Assert.False(pending.IsCompleted);

        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => pending.WaitAsync(Patience));

        a.Send("x"u8);
        Assert.Equal(1, await reader.ReceiveAsync(buffer).AsTask().WaitAsync(Patience));
    }

    [Fact]
    public async Task Disposing_fails_the_pending_receive_and_the_reactor_forgets_the_socket()
    {
        var (a, b) = Pair();
        Own(a);
        var reactor = new SocketReactor(inlineReads: false);
        var reader = new ReactorSocket(b, reactor);
        Assert.Equal(1, reactor.Count);
        var pending = reader.ReceiveAsync(new byte[16]).AsTask();

        reader.Dispose();

        var error = await Assert.ThrowsAsync<SocketException>(() => pending.WaitAsync(Patience));
        Assert.Equal(SocketError.OperationAborted, error.SocketErrorCode);
        Assert.Equal(0, reactor.Count);
        Assert.Equal(-1, reader.TrySend("late"u8));
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await reader.ReceiveAsync(new byte[16]));
    }

    [Fact]
    public async Task A_second_receive_while_one_is_outstanding_is_refused()
    {
        var (a, b) = Pair();
        Own(a);
        var reader = Own(new ReactorSocket(b, PoolReactor));
        var first = reader.ReceiveAsync(new byte[16]);

        var error = await Assert.ThrowsAsync<InvalidOperationException>(async () => await reader.ReceiveAsync(new byte[16]));
        Assert.Contains("already outstanding", error.Message, StringComparison.Ordinal);
        a.Send("x"u8);
        Assert.Equal(1, await first.AsTask().WaitAsync(Patience));
    }

    [Fact]
    public async Task A_peer_that_closes_with_unread_data_is_reported_as_a_reset()
    {
        var (a, b) = Pair();
        var reader = Own(new ReactorSocket(b, PoolReactor));
        b.Send("unread by a"u8);
        var pending = reader.ReceiveAsync(new byte[16]).AsTask();
        a.Dispose(); // closes with our bytes still in its receive queue

        var error = await Assert.ThrowsAsync<SocketException>(() => pending.WaitAsync(Patience));
        Assert.Equal(SocketError.ConnectionReset, error.SocketErrorCode);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Inline_reads_decide_whether_the_code_after_a_receive_runs_on_the_reactor_thread(bool inline)
    {
        var (a, b) = Pair();
        Own(a);
        var reader = Own(new ReactorSocket(b, inline ? InlineReactor : PoolReactor));
        var pending = Observe(reader);
        Assert.False(pending.IsCompleted);

        a.Send("x"u8);

        var (threadName, onPool) = await pending.WaitAsync(Patience);
        Assert.Equal(inline, threadName == "daemoneye-reactor");
        Assert.Equal(!inline, onPool);

        static async Task<(string? Name, bool OnPool)> Observe(ReactorSocket reader)
        {
            await reader.ReceiveAsync(new byte[16]).ConfigureAwait(false);
            return (Thread.CurrentThread.Name, Thread.CurrentThread.IsThreadPoolThread);
        }
    }

    [Fact]
    public async Task Inside_the_busy_poll_window_a_read_runs_on_the_reactor_thread_and_after_it_on_the_pool()
    {
        var time = new FakeTimeProvider();
        var reactor = new SocketReactor(inlineReads: false, time);
        var (a, b) = Pair();
        Own(a);
        var reader = Own(new ReactorSocket(b, reactor));
        try
        {
            reactor.BusyPoll = TimeSpan.FromMicroseconds(200);

            // No event yet, so the reactor sleeps in epoll_wait: the first read is handed to the pool.
            Assert.Equal((false, true), await ReadOne(reader, a));

            // That event opened a window the frozen clock never closes: the reactor polls, and the
            // next read runs where it was seen.
            Assert.Equal((true, false), await ReadOne(reader, a));
            Assert.Equal((true, false), await ReadOne(reader, a));

            // The window runs from the last event: 199 µs on, then 2 µs more (201 µs after the
            // first event, 2 µs after the last), it still polls.
            var sleeps = reactor.BlockingWaits;
            time.Advance(TimeSpan.FromMicroseconds(199));
            Assert.Equal((true, false), await ReadOne(reader, a));
            time.Advance(TimeSpan.FromMicroseconds(2));
            Assert.Equal((true, false), await ReadOne(reader, a));
            Assert.Equal(sleeps, reactor.BlockingWaits);

            // 200 µs after the last event the reactor sleeps again, and the pool takes the next read.
            time.Advance(TimeSpan.FromMicroseconds(200));
            Assert.True(SpinWait.SpinUntil(() => reactor.BlockingWaits > sleeps, Patience), "the reactor kept polling after its window");
            Assert.Equal((false, true), await ReadOne(reader, a));
        }
        finally
        {
            reactor.BusyPoll = TimeSpan.Zero; // the frozen clock would keep it polling for the rest of the run
        }

        // Armed first, then fed: where the code after the receive runs.
        static async Task<(bool OnReactor, bool OnPool)> ReadOne(ReactorSocket reader, Socket writer)
        {
            var pending = Observe(reader);
            Assert.False(pending.IsCompleted);
            writer.Send("x"u8);
            var seen = await pending.WaitAsync(Patience);
            await Task.Yield(); // off the reactor thread, should this continuation have run on it: the test waits on the reactor next
            return seen;
        }

        static async Task<(bool OnReactor, bool OnPool)> Observe(ReactorSocket reader)
        {
            Assert.Equal(1, await reader.ReceiveAsync(new byte[16]).ConfigureAwait(false));
            return (Thread.CurrentThread.Name == "daemoneye-reactor", Thread.CurrentThread.IsThreadPoolThread);
        }
    }

    [Fact]
    public async Task On_demand_a_busy_poll_window_opens_only_after_events_that_asked_for_one()
    {
        var time = new FakeTimeProvider();
        var reactor = new SocketReactor(inlineReads: true, time) { PollOnDemand = true };
        var (a, b) = Pair();
        Own(a);
        var reader = Own(new ReactorSocket(b, reactor));
        try
        {
            reactor.BusyPoll = TimeSpan.FromMicroseconds(200);

            // Reads that do not ask (one-way messages) leave the reactor sleeping between events.
            Assert.False(await ReadOne(reader, a, ask: false));
            Assert.False(await ReadOne(reader, a, ask: false));

            // A read that asks (an RPC frame) opens a window: the next event is found by a poll.
            Assert.False(await ReadOne(reader, a, ask: true));
            Assert.True(await ReadOne(reader, a, ask: false));

            // Events that did not ask do not extend the window: 200 µs after the asking one, it closes.
            var sleeps = reactor.BlockingWaits;
            time.Advance(TimeSpan.FromMicroseconds(150));
            Assert.True(await ReadOne(reader, a, ask: false));
            time.Advance(TimeSpan.FromMicroseconds(51));
            Assert.True(SpinWait.SpinUntil(() => reactor.BlockingWaits > sleeps, Patience), "a read that did not ask extended the window");
            Assert.False(await ReadOne(reader, a, ask: false));
        }
        finally
        {
            reactor.BusyPoll = TimeSpan.Zero;
        }

        // Whether the read's event came from a poll inside a window; asks for one when told to.
        static async Task<bool> ReadOne(ReactorSocket reader, Socket writer, bool ask)
        {
            var pending = Observe(reader, ask);
            Assert.False(pending.IsCompleted);
            writer.Send("x"u8);
            var polled = await pending.WaitAsync(Patience);
            await Task.Yield(); // off the reactor thread: the test waits on the reactor next
            return polled;
        }

        static async Task<bool> Observe(ReactorSocket reader, bool ask)
        {
            Assert.Equal(1, await reader.ReceiveAsync(new byte[16]).ConfigureAwait(false));
            Assert.Equal("daemoneye-reactor", Thread.CurrentThread.Name);
            var polled = reader.Reactor.Polling;
            if (ask)
            {
                reader.RequestPoll();
            }

            return polled;
        }
    }

    [Fact]
    public void The_busy_poll_window_is_zero_to_ten_milliseconds_and_reads_back_as_set()
    {
        var reactor = PoolReactor;
        Assert.Equal(TimeSpan.Zero, reactor.BusyPoll);
        foreach (var bad in new[] { TimeSpan.FromTicks(-1), TimeSpan.FromMicroseconds(10_001) })
        {
            var error = Assert.Throws<ArgumentOutOfRangeException>(() => reactor.BusyPoll = bad);
            Assert.Contains("allowed: 0 (off) to 10000 µs", error.Message, StringComparison.Ordinal);
        }

        var other = new SocketReactor(inlineReads: false);
        foreach (var ok in new[] { TimeSpan.FromMicroseconds(1), TimeSpan.FromMicroseconds(200), SocketReactor.MaxBusyPoll, TimeSpan.Zero })
        {
            other.BusyPoll = ok;
            Assert.Equal(ok, other.BusyPoll);
        }
    }

    private T Own<T>(T owned)
        where T : IDisposable
    {
        _owned.Add(owned);
        return owned;
    }

    private (Socket A, Socket B) Pair()
    {
        var path = Path.Combine(_dir, $"s{_owned.Count}.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        var a = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        a.Connect(new UnixDomainSocketEndPoint(path));
        var b = listener.Accept();
        return (a, b);
    }

    /// <summary>The events the test reactor's epoll set holds for <paramref name="socket"/>, from /proc/self/fdinfo.</summary>
    private static uint Registration(Socket socket)
    {
        var fd = (int)socket.SafeHandle.DangerousGetHandle();
        foreach (var line in File.ReadLines($"/proc/self/fdinfo/{PoolReactor.Descriptor}"))
        {
            // tfd:       42 events: 80002019 data: 7  pos:0 ino:... sdev:...
            var fields = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length >= 4 && fields[0] == "tfd:" && int.Parse(fields[1], CultureInfo.InvariantCulture) == fd && fields[2] == "events:")
            {
                // The kernel always reports errors and hang-ups; the test is about what was asked for.
                return uint.Parse(fields[3], NumberStyles.HexNumber, CultureInfo.InvariantCulture) & ~(SocketReactor.EpollErr | SocketReactor.EpollHup);
            }
        }

        throw new InvalidOperationException($"fd {fd} is not in the reactor's epoll set");
    }
}
