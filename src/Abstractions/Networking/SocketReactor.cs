using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace DaemonEye.Networking;

/// <summary>
/// The process's one epoll(7) thread for bus sockets (see <see cref="ReactorSocket"/>). A socket is
/// registered edge-triggered for readability only; writability is asked for only while a send
/// waits for buffer space. The runtime's own socket engine registers every socket for both, so each
/// read on one end wakes the epoll thread of the process at the other end to say "writable" (a
/// wake-up nobody waits for): on a two-way RPC path that doubled the wake-ups per call
/// (docs/benchmarks.md, "Wake-ups nobody waits for").
/// </summary>
/// <remarks>
/// <para>
/// <b>Busy polling.</b> With <see cref="BusyPoll"/> set, the thread does not block in epoll_wait
/// for that long after its last event: it polls without waiting and yields the CPU between polls
/// (sched_yield, so a runnable thread of any process on this CPU goes first). An answer that comes
/// back within the window is then seen without the wake-up of a sleeping thread, which on a small
/// virtual machine is most of a hop's cost (docs/benchmarks.md, "Busy polling").
/// Reads completed during the window run on this thread, as with <see cref="InlineReads"/>: the
/// thread is awake anyway, and handing the read to the thread pool would wake a second one. An
/// idle process polls for one window after its last event and then blocks as before.
/// </para>
/// </remarks>
public sealed partial class SocketReactor
{
    private const int EpollCtlAdd = 1;
    private const int EpollCtlMod = 3;
    private const int EIntr = 4;
    internal const uint EpollIn = 0x001;
    internal const uint EpollOut = 0x004;
    internal const uint EpollErr = 0x008;
    internal const uint EpollHup = 0x010;
    internal const uint EpollRdHup = 0x2000;
    internal const uint EpollEt = 0x80000000;
    internal const uint ReadInterest = EpollIn | EpollRdHup | EpollEt;
    internal const uint WriteInterest = ReadInterest | EpollOut;
    private const int MaxEvents = 128;

    /// <summary>The longest <see cref="BusyPoll"/> window accepted.</summary>
    public static readonly TimeSpan MaxBusyPoll = TimeSpan.FromMilliseconds(10);

    /// <summary>True for a <see cref="BusyPoll"/> window the reactor accepts: 0 (off) to <see cref="MaxBusyPoll"/>.</summary>
    public static bool IsValidBusyPoll(TimeSpan window) => window >= TimeSpan.Zero && window <= MaxBusyPoll;

    // struct epoll_event is packed on x86-64 (12 bytes) and naturally aligned elsewhere (16 bytes).
    private static readonly bool Packed = RuntimeInformation.ProcessArchitecture is Architecture.X64 or Architecture.X86;
    private static readonly int EventSize = Packed ? 12 : 16;
    private static readonly int DataOffset = Packed ? 4 : 8;

    private static readonly Lazy<SocketReactor> s_shared = new(() => new SocketReactor(InlineCompletionsFromEnvironment()));

    private readonly int _epoll;
    private readonly ConcurrentDictionary<long, ReactorSocket> _sockets = new();
    private readonly TimeProvider _time;
    private long _lastId;
    private long _busyPollTicks; // in _time's timestamp units; 0: off
    private long _blockingWaits;

    // Written and read on the reactor thread only: the events being handled came from a poll inside the window.
    private bool _polling;
    private volatile bool _inlineReads;
    private volatile bool _pollOnDemand;
    private int _pollRequested;

    internal SocketReactor(bool inlineReads, TimeProvider? time = null)
    {
        _inlineReads = inlineReads;
        _time = time ?? TimeProvider.System;
        _epoll = epoll_create1(0x80000 /* EPOLL_CLOEXEC */);
        if (_epoll < 0)
        {
            throw new SocketException(Marshal.GetLastPInvokeError());
        }

        var thread = new Thread(Run) { IsBackground = true, Name = "daemoneye-reactor" };
        thread.Start();
    }

    /// <summary>The environment switch that also governs the runtime's own sockets (<c>1</c>: inline).</summary>
    public const string InlineCompletionsVariable = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    /// <summary>The process's reactor, started on first use.</summary>
    public static SocketReactor Shared => s_shared.Value;

    /// <summary>
    /// True when the code after a receive runs on the reactor thread itself (no hand-off to the
    /// thread pool). Starts as <see cref="InlineCompletionsVariable"/> says, so that one switch decides
    /// for the runtime's sockets and the bus sockets alike; a process whose read handlers never block
    /// (the agent's gateway) sets it. Takes effect at each socket's next read.
    /// </summary>
    public bool InlineReads
    {
        get => _inlineReads;
        set => _inlineReads = value;
    }

    /// <summary>
    /// With <see cref="BusyPoll"/> set: poll only after events during which someone called
    /// <see cref="RequestPoll"/> (the agent does for RPC frames, whose answer comes back within
    /// microseconds), not after every event: a stream of one-way messages then costs a wake-up per
    /// read instead of a polling core (docs/benchmarks.md, "Busy polling").
    /// </summary>
    public bool PollOnDemand
    {
        get => _pollOnDemand;
        set => _pollOnDemand = value;
    }

    /// <summary>Asks for a busy-poll window after the events now being handled (see <see cref="PollOnDemand"/>).</summary>
    public void RequestPoll()
    {
        if (_pollOnDemand && Volatile.Read(ref _pollRequested) == 0)
        {
            Volatile.Write(ref _pollRequested, 1);
        }
    }

    /// <summary>
    /// How long the thread keeps polling after its last event before it blocks; zero (the default)
    /// turns busy polling off. Takes effect at the thread's next poll. At most <see cref="MaxBusyPoll"/>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Negative or longer than <see cref="MaxBusyPoll"/>.</exception>
    public TimeSpan BusyPoll
    {
        get => TimeSpan.FromTicks(Volatile.Read(ref _busyPollTicks) * TimeSpan.TicksPerSecond / _time.TimestampFrequency);
        set
        {
            if (!IsValidBusyPoll(value))
            {
                throw new ArgumentOutOfRangeException(nameof(value), value,
                    $"the busy-poll window is {value.TotalMicroseconds} µs; allowed: 0 (off) to {MaxBusyPoll.TotalMicroseconds} µs");
            }

            // Whole timestamp units, rounded up so that a window never comes out shorter than asked (integers: exact for whole µs).
            Volatile.Write(ref _busyPollTicks, ((value.Ticks * _time.TimestampFrequency) + TimeSpan.TicksPerSecond - 1) / TimeSpan.TicksPerSecond);
        }
    }

    /// <summary>True on the reactor thread while it handles events found by a poll inside the busy-poll window.</summary>
    internal bool Polling => _polling;

    /// <summary>Times the thread has gone to sleep in epoll_wait (tests wait on it to know the window has closed).</summary>
    internal long BlockingWaits => Interlocked.Read(ref _blockingWaits);

    /// <summary>Bus sockets registered now (for tests and diagnostics).</summary>
    public int Count => _sockets.Count;

    /// <summary>The epoll descriptor (tests read its registrations from /proc/self/fdinfo).</summary>
    internal int Descriptor => _epoll;

    private static bool InlineCompletionsFromEnvironment() =>
        Environment.GetEnvironmentVariable(InlineCompletionsVariable) == "1";

    internal long Register(ReactorSocket socket, SafeHandle handle)
    {
        var id = Interlocked.Increment(ref _lastId);
        _sockets[id] = socket;
        Control(EpollCtlAdd, handle, ReadInterest, id);
        return id;
    }

    /// <summary>Asks for writability too (<paramref name="write"/>) or for readability only.</summary>
    internal void Interest(SafeHandle handle, long id, bool write) =>
        Control(EpollCtlMod, handle, write ? WriteInterest : ReadInterest, id);

    /// <summary>
    /// Forgets the socket. It is not removed from the epoll set: closing the descriptor does that,
    /// and removing by number could hit a new socket that reused the number of a closed one.
    /// </summary>
    internal void Forget(long id) => _sockets.TryRemove(id, out _);

    private void Control(int op, SafeHandle handle, uint events, long id)
    {
        Span<byte> ev = stackalloc byte[16];
        ev.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(ev, events);
        BinaryPrimitives.WriteInt64LittleEndian(ev[DataOffset..], id);
        var added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            if (epoll_ctl(_epoll, op, (int)handle.DangerousGetHandle(), ref MemoryMarshal.GetReference(ev)) < 0)
            {
                throw new SocketException(Marshal.GetLastPInvokeError());
            }
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }
    }

    private void Run()
    {
        var events = new byte[MaxEvents * EventSize];
        var pollUntil = 0L;
        while (true)
        {
            _polling = pollUntil != 0 && Volatile.Read(ref _busyPollTicks) > 0 && _time.GetTimestamp() < pollUntil;
            if (!_polling)
            {
                Interlocked.Increment(ref _blockingWaits);
            }

            var count = epoll_wait(_epoll, ref events[0], MaxEvents, _polling ? 0 : -1);
            if (count == 0)
            {
                // Nothing yet, inside the window: let whatever else is runnable here go first.
                Thread.Yield();
                continue;
            }

            if (count < 0)
            {
                if (Marshal.GetLastPInvokeError() == EIntr)
                {
                    continue;
                }

                // Nothing the reactor can do about a failing epoll descriptor but stop; every socket
                // it serves would then hang, so the process is told loudly.
                Environment.FailFast($"epoll_wait failed with errno {Marshal.GetLastPInvokeError()}");
            }

            for (var i = 0; i < count; i++)
            {
                var entry = events.AsSpan(i * EventSize, EventSize);
                var mask = BinaryPrimitives.ReadUInt32LittleEndian(entry);
                var id = BinaryPrimitives.ReadInt64LittleEndian(entry[DataOffset..]);
                if (!_sockets.TryGetValue(id, out var socket))
                {
                    continue; // disposed after the event was queued
                }

                // A hang-up or an error wakes both directions: the next syscall meets it and reports it.
                if ((mask & (EpollOut | EpollErr | EpollHup)) != 0)
                {
                    socket.OnWritable();
                }

                if ((mask & (EpollIn | EpollRdHup | EpollErr | EpollHup)) != 0)
                {
                    socket.OnReadable(hangUp: (mask & (EpollRdHup | EpollErr | EpollHup)) != 0);
                }
            }

            // The window runs from the end of the last handled event, so time spent handling it does not eat the window.
            // On demand, only events that asked for it open or extend one; others leave an open window to run out.
            var window = Volatile.Read(ref _busyPollTicks);
            if (window == 0)
            {
                pollUntil = 0;
            }
            else if (!_pollOnDemand || Interlocked.Exchange(ref _pollRequested, 0) != 0)
            {
                pollUntil = _time.GetTimestamp() + window;
            }
        }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int epoll_create1(int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int epoll_ctl(int epfd, int op, int fd, ref byte ev);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int epoll_wait(int epfd, ref byte events, int maxevents, int timeout);
}
