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

    // struct epoll_event is packed on x86-64 (12 bytes) and naturally aligned elsewhere (16 bytes).
    private static readonly bool Packed = RuntimeInformation.ProcessArchitecture is Architecture.X64 or Architecture.X86;
    private static readonly int EventSize = Packed ? 12 : 16;
    private static readonly int DataOffset = Packed ? 4 : 8;

    private static readonly Lazy<SocketReactor> s_shared = new(() => new SocketReactor(InlineCompletionsFromEnvironment()));

    private readonly int _epoll;
    private readonly ConcurrentDictionary<long, ReactorSocket> _sockets = new();
    private long _lastId;

    internal SocketReactor(bool inlineReads)
    {
        InlineReads = inlineReads;
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
    /// thread pool). Read once, from <see cref="InlineCompletionsVariable"/>, when the reactor starts,
    /// so that one switch decides for the runtime's sockets and the bus sockets alike.
    /// </summary>
    public bool InlineReads { get; }

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
        while (true)
        {
            var count = epoll_wait(_epoll, ref events[0], MaxEvents, -1);
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
        }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int epoll_create1(int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int epoll_ctl(int epfd, int op, int fd, ref byte ev);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int epoll_wait(int epfd, ref byte events, int maxevents, int timeout);
}
