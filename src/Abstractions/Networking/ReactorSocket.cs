using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading.Tasks.Sources;

namespace DaemonEye.Networking;

/// <summary>
/// A connected stream socket whose receives and sends wait on the <see cref="SocketReactor"/>
/// instead of the runtime's socket engine. One receive and one send may be outstanding at a time
/// (a reader and a writer). Every syscall is made with <c>MSG_DONTWAIT</c>, so the socket's own
/// blocking mode does not matter; the socket must not also be used with the runtime's asynchronous
/// operations (that would register it with the runtime's engine too).
/// </summary>
/// <remarks>
/// A receive that returns fewer bytes than asked has emptied the socket (epoll(7) says so for stream
/// sockets), so the next receive waits for the next readable edge at once instead of first meeting
/// EAGAIN: one syscall fewer per read. The edge counter closes the race: an edge that arrives after
/// a receive began is seen, and the receive is tried again. A hang-up or an error is different: it
/// may be waiting behind the bytes a short read returned, with its one edge already spent, so once
/// the reactor has seen one, every receive asks the socket.
/// </remarks>
public sealed partial class ReactorSocket : IDisposable
{
    private const int MsgDontWait = 0x40;
    private const int MsgNoSignal = 0x4000;
    private const int EIntr = 4;
    private const int EAgain = 11; // EWOULDBLOCK is the same number on Linux

    private readonly SocketReactor _reactor;
    private readonly long _id;
    private readonly Lock _gate = new();
    private readonly Waiter _readWaiter;
    private readonly Waiter _writeWaiter;

    // Guarded by _gate.
    private long _readEdges;
    private bool _readArmed;
    private bool _writeArmed;
    private bool _writeInterest; // writability is in the socket's registration
    private bool _disposed;

    // Set by the reactor, read by the receiver without the gate: a hang-up or an error was seen, and no edge follows it.
    private volatile bool _hungUp;
    private readonly TaskCompletionSource _hangUp = new(TaskCreationOptions.RunContinuationsAsynchronously);

    // The reader's own state (one receive at a time).
    private bool _mayRead = true;
    private long _seenEdges;
    private int _receiving;
    private int _sending;

    /// <summary>Takes over <paramref name="socket"/>'s I/O; disposing this disposes the socket.</summary>
    public ReactorSocket(Socket socket, SocketReactor? reactor = null)
    {
        ArgumentNullException.ThrowIfNull(socket);
        Socket = socket;
        _reactor = reactor ?? SocketReactor.Shared;
        _readWaiter = new Waiter(this, read: true, runAsynchronously: true);
        _writeWaiter = new Waiter(this, read: false, runAsynchronously: true);
        _id = _reactor.Register(this, socket.SafeHandle);
    }

    /// <summary>Asks the reactor for a busy-poll window after this read (see <see cref="SocketReactor.PollOnDemand"/>).</summary>
    public void RequestPoll() => _reactor.RequestPoll();

    /// <summary>The reactor this socket waits on.</summary>
    internal SocketReactor Reactor => _reactor;

    /// <summary>Readable edges the reactor has reported so far (for tests).</summary>
    internal long ReadEdges
    {
        get
        {
            lock (_gate)
            {
                return _readEdges;
            }
        }
    }

    /// <summary>Runs after a receive met EAGAIN and before the wait is armed (a test seam for that race).</summary>
    internal Action? BetweenReceiveAndWait { get; set; }

    /// <summary>The socket, for its address, credentials and shutdown; not for reads or writes.</summary>
    public Socket Socket { get; }

    /// <summary>
    /// Completes once the reactor has seen the peer hang up (or the socket fail), whether or not anyone
    /// is receiving: for a reader that has stopped reading (its consumer is full) and must still learn
    /// that the connection has ended. Bytes the peer sent before the end may still be there to receive.
    /// </summary>
    public Task HangUp => _hangUp.Task;

    /// <summary>
    /// Receives what is there, waiting for the first byte if nothing is. Returns 0 at the end of the
    /// stream. Throws <see cref="SocketException"/> when the socket fails or is disposed meanwhile.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<int> ReceiveAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _receiving, 1) != 0)
        {
            throw new InvalidOperationException("a receive is already outstanding on this socket");
        }

        try
        {
            while (true)
            {
                ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed), this);
                cancellationToken.ThrowIfCancellationRequested();
                if (_mayRead)
                {
                    _seenEdges = Volatile.Read(ref _readEdges);
                    var received = Receive(buffer.Span, out var errno);
                    if (received >= 0)
                    {
                        // A short read emptied the socket, unless its end or an error is still to be
                        // read: that came with an edge already counted, so none would wake us for it.
                        _mayRead = received == buffer.Length || _hungUp;
                        return received;
                    }

                    if (errno != EAgain)
                    {
                        throw Failure(errno);
                    }

                    _mayRead = false;
                    BetweenReceiveAndWait?.Invoke();
                }

                _readWaiter.Reset(); // before it is armed: the reactor may complete it at once
                lock (_gate)
                {
                    if (_readEdges != _seenEdges)
                    {
                        _mayRead = true; // an edge came after the last receive began: try again
                        continue;
                    }

                    ObjectDisposedException.ThrowIf(_disposed, this);
                    _readArmed = true;
                }

                await _readWaiter.WaitAsync(cancellationToken).ConfigureAwait(false);
                _mayRead = true;
            }
        }
        finally
        {
            Volatile.Write(ref _receiving, 0);
        }
    }

    /// <summary>Sends all of <paramref name="data"/>, waiting for buffer space as needed.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask SendAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _sending, 1) != 0)
        {
            throw new InvalidOperationException("a send is already outstanding on this socket");
        }

        try
        {
            while (!data.IsEmpty)
            {
                ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed), this);
                cancellationToken.ThrowIfCancellationRequested();
                var sent = Send(data.Span, out var errno);
                if (sent > 0)
                {
                    data = data[sent..];
                    continue;
                }

                if (errno != EAgain)
                {
                    throw Failure(errno);
                }

                _writeWaiter.Reset();
                lock (_gate)
                {
                    ObjectDisposedException.ThrowIf(_disposed, this);
                    _writeArmed = true;
                    if (!_writeInterest)
                    {
                        // Under the gate, so it cannot cross the reactor's withdrawal. A socket that
                        // is writable by now reports it at once.
                        _reactor.Interest(Socket.SafeHandle, _id, write: true);
                        _writeInterest = true;
                    }
                }

                await _writeWaiter.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            Volatile.Write(ref _sending, 0);
        }
    }

    /// <summary>
    /// Sends what the kernel takes now, never waiting: the bytes sent (all, a prefix, or 0 when the
    /// buffer is full), or -1 when the socket failed or is closed (the writer's next send reports it).
    /// The caller keeps these bytes from interleaving with an outstanding <see cref="SendAsync"/>.
    /// </summary>
    public int TrySend(ReadOnlySpan<byte> data)
    {
        if (Volatile.Read(ref _disposed))
        {
            return -1;
        }

        var sent = Send(data, out var errno);
        return sent >= 0 ? sent : errno == EAgain ? 0 : -1;
    }

    /// <summary>Fails an outstanding receive and send, forgets the socket and disposes it.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
        }

        _reactor.Forget(_id);
        var aborted = new SocketException((int)SocketError.OperationAborted);
        if (TakeArmed(read: true))
        {
            _readWaiter.Fail(aborted);
        }

        if (TakeArmed(read: false))
        {
            _writeWaiter.Fail(aborted);
        }

        Socket.Dispose();
    }

    internal void OnReadable(bool hangUp)
    {
        if (hangUp)
        {
            _hungUp = true;
            _hangUp.TrySetResult();
        }

        bool wake;
        lock (_gate)
        {
            _readEdges++;
            wake = _readArmed;
            _readArmed = false;
        }

        if (wake)
        {
            // Inside a busy-poll window this thread is awake anyway: run the reader here rather than wake another.
            _readWaiter.Complete(inline: _reactor.Polling || _reactor.InlineReads);
        }
    }

    /// <summary>
    /// Wakes a waiting send. Writability stays asked for while sends keep meeting a full buffer; the
    /// first writable edge with no send waiting withdraws it (one syscall per congested spell, not two
    /// per wait).
    /// </summary>
    internal void OnWritable()
    {
        bool wake;
        lock (_gate)
        {
            wake = _writeArmed;
            _writeArmed = false;
            if (!wake && _writeInterest && !_disposed)
            {
                _writeInterest = false;
                try
                {
                    _reactor.Interest(Socket.SafeHandle, _id, write: false);
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException)
                {
                    // Closed meanwhile: closing took it out of the epoll set.
                }
            }
        }

        if (wake)
        {
            _writeWaiter.Complete();
        }
    }

    /// <summary>Disarms a wait; true when it was armed (the caller then completes it).</summary>
    private bool TakeArmed(bool read)
    {
        lock (_gate)
        {
            ref var armed = ref read ? ref _readArmed : ref _writeArmed;
            var was = armed;
            armed = false;
            return was;
        }
    }

    private unsafe int Receive(Span<byte> buffer, out int errno)
    {
        try
        {
            fixed (byte* bytes = buffer)
            {
                return Receive(bytes, buffer.Length, out errno);
            }
        }
        catch (ObjectDisposedException)
        {
            errno = 9; // EBADF
            return -1;
        }
    }

    private unsafe int Receive(byte* buffer, int length, out int errno)
    {
        while (true)
        {
            var received = recv(Socket.SafeHandle, buffer, (nuint)length, MsgDontWait);
            if (received >= 0)
            {
                errno = 0;
                return (int)received;
            }

            errno = Marshal.GetLastPInvokeError();
            if (errno != EIntr)
            {
                return -1;
            }
        }
    }

    private unsafe int Send(ReadOnlySpan<byte> data, out int errno)
    {
        try
        {
            fixed (byte* bytes = data)
            {
                while (true)
                {
                    var sent = send(Socket.SafeHandle, bytes, (nuint)data.Length, MsgDontWait | MsgNoSignal);
                    if (sent >= 0)
                    {
                        errno = 0;
                        return (int)sent;
                    }

                    errno = Marshal.GetLastPInvokeError();
                    if (errno != EIntr)
                    {
                        return -1;
                    }
                }
            }
        }
        catch (ObjectDisposedException)
        {
            errno = 9; // EBADF
            return -1;
        }
    }

    /// <summary>The runtime's own exception for an errno, so callers catch what they always caught.</summary>
    private SocketException Failure(int errno) =>
        Volatile.Read(ref _disposed) ? new SocketException((int)SocketError.OperationAborted) : SocketErrors.FromErrno(errno);

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial nint recv(SafeHandle socket, byte* buffer, nuint length, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial nint send(SafeHandle socket, byte* buffer, nuint length, int flags);

    /// <summary>One reusable wait: armed under the socket's gate, completed by the reactor, a cancellation or disposal.</summary>
    /// <remarks>It is its own cancellation callback's state, so that a wait allocates nothing.</remarks>
    private sealed class Waiter(ReactorSocket owner, bool read, bool runAsynchronously) : IValueTaskSource
    {
        private readonly ReactorSocket _owner = owner;
        private readonly bool _read = read;
        private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = runAsynchronously };
        private CancellationTokenRegistration _cancellation;
        private int _state; // 0 waiting, 1 settled: whoever settles first wins

        public void Reset()
        {
            _core.Reset();
            _state = 0;
        }

        public ValueTask WaitAsync(CancellationToken cancellationToken)
        {
            if (cancellationToken.CanBeCanceled)
            {
                _cancellation = cancellationToken.UnsafeRegister(static (state, token) =>
                {
                    var waiter = (Waiter)state!;
                    if (waiter._owner.TakeArmed(waiter._read))
                    {
                        waiter.Fail(new OperationCanceledException(token));
                    }
                }, this);
            }

            return new ValueTask(this, _core.Version);
        }

        /// <summary>Completes the wait; <paramref name="inline"/> runs its continuation on this thread even when the waiter hands off otherwise.</summary>
        public void Complete(bool inline = false)
        {
            if (Interlocked.Exchange(ref _state, 1) == 0)
            {
                // Only this socket's one receiver (or sender) waits on this waiter, so the switch is per completion.
                _core.RunContinuationsAsynchronously = runAsynchronously && !inline;
                _core.SetResult(true);
            }
        }

        public void Fail(Exception error)
        {
            if (Interlocked.Exchange(ref _state, 1) == 0)
            {
                _core.RunContinuationsAsynchronously = runAsynchronously;
                _core.SetException(error);
            }
        }

        public void GetResult(short token)
        {
            _cancellation.Dispose();
            _cancellation = default;
            _core.GetResult(token);
        }

        public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _core.OnCompleted(continuation, state, token, flags);
    }
}
