using System.Diagnostics;
using System.Net.Sockets;
using DaemonEye.Native.SockDiag;
using DaemonEye.Protocol.Network.V1;

namespace DaemonEye.Collectors.Netmond;

/// <summary>What one scan or one batch of destroy notifications changed.</summary>
internal sealed class NetworkChanges
{
    public List<ConnectionEvent> Connections { get; } = [];

    public List<ListenerEvent> Listeners { get; } = [];

    public List<NetworkAnomaly> Anomalies { get; } = [];

    public int Sockets { get; set; }

    public TimeSpan Duration { get; set; }
}

/// <summary>Counters over the table's life; read by HealthCheck.</summary>
internal sealed class TableCounters
{
    public long Scans;
    public long LastScanMicros;
    public long MaxScanMicros;
    public long DumpsInterrupted;
    public long MalformedAnswers;
    public long Unattributed;
    public long ClosedUnseen;
    public long Vanished;
    public long DuplicateCloses;
    public long NeverEstablished;
    public long UnconnectedDestroyed;
    public long Filtered;
}

/// <summary>One socket netmond tracks: a connection or a listener, by the kernel's cookie.</summary>
internal sealed class TrackedSocket
{
    public InetSocket Socket;
    public bool IsListener;
    public SocketOwner Owner = new();
    public Direction Direction;
    public ulong FirstSeenUnixMs;
    public long FirstSeenTimestamp;
    public bool SeenFromStart;
    public int MissingScans;
}

/// <summary>
/// The sockets netmond knows and the two ways they change: a scan (a sock_diag dump of every TCP
/// and UDP socket: connections first seen established, listeners started, and what is gone) and
/// the kernel's destroy notifications (a socket freed, with its final counters, however short its
/// life). A socket is its cookie. When notifications flow, a socket missing from one scan gets one
/// more interval for its notification before it is declared gone ("vanished"). The first scan is
/// the baseline: no opened/started events (the snapshot task has it), anomalies yes. Not
/// thread-safe: the owner serializes scans, notifications and snapshots.
/// </summary>
internal sealed partial class SocketTable(SockDiagSocket diag, SocketOwners owners, NetmondSettings settings, TimeProvider time, string collectorId)
{
    private static readonly TimeSpan RememberClosed = TimeSpan.FromSeconds(30);
    private readonly Dictionary<ulong, TrackedSocket> _sockets = [];
    private readonly Dictionary<ulong, long> _recentlyClosed = [];
    private readonly HashSet<(ProtocolType, int)> _listeningPorts = [];
    private readonly List<InetSocket> _dump = [];
    private readonly HashSet<ulong> _present = [];
    private readonly List<ulong> _newInodes = [];
    private readonly HashSet<ulong> _liveInodes = [];

    public TableCounters Counters { get; } = new();

    public int Count => _sockets.Count;

    public DaemonEye.Native.SockDiag.SocketInodeMap InodeMap => owners.Map;

    public DateTimeOffset? LastScan { get; private set; }

    /// <summary>Set when the destroy notifications are being received: missing sockets then wait
    /// one more scan for theirs.</summary>
    public bool NotificationsActive { get; set; }

    public NetworkChanges Scan(CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        var baseline = Counters.Scans == 0;
        var changes = new NetworkChanges();
        _dump.Clear();
        foreach (var family in (ReadOnlySpan<AddressFamily>)[AddressFamily.InterNetwork, AddressFamily.InterNetworkV6])
        {
            if (settings.Tcp)
            {
                Tally(diag.Dump(family, ProtocolType.Tcp, SocketStates.FullSockets, tcpInfo: true, _dump, cancellationToken));
            }

            if (settings.Udp)
            {
                Tally(diag.Dump(family, ProtocolType.Udp, SocketStates.All, tcpInfo: false, _dump, cancellationToken));
            }
        }

        var now = time.GetTimestamp();
        var nowUnixMs = UnixMs();
        owners.BeginScan();

        // Listening ports first: they tell inbound from outbound.
        _listeningPorts.Clear();
        foreach (var s in _dump)
        {
            if (IsListener(s))
            {
                _listeningPorts.Add((s.Protocol, s.LocalPort));
            }
        }

        _present.Clear();
        _newInodes.Clear();
        _liveInodes.Clear();
        foreach (var s in _dump)
        {
            _liveInodes.Add(s.Inode);
            if ((IsListener(s) || IsConnection(s)) && !_sockets.ContainsKey(s.Cookie) && s.Inode != 0)
            {
                _newInodes.Add(s.Inode);
            }
        }

        owners.Resolve(_newInodes);
        foreach (var s in _dump)
        {
            var listener = IsListener(s);
            if (!listener && !IsConnection(s))
            {
                continue;
            }

            _present.Add(s.Cookie);
            if (_sockets.TryGetValue(s.Cookie, out var known))
            {
                known.Socket = s;
                known.MissingScans = 0;
                continue;
            }

            var tracked = new TrackedSocket
            {
                Socket = s,
                IsListener = listener,
                Owner = owners.Describe(s),
                FirstSeenUnixMs = nowUnixMs,
                FirstSeenTimestamp = now,
                SeenFromStart = baseline,
            };
            tracked.Direction = listener ? Direction.Unspecified : DirectionOf(s);
            _sockets[s.Cookie] = tracked;
            if (!tracked.Owner.Attributed)
            {
                Counters.Unattributed++;
            }

            if (listener)
            {
                var info = ListenerInfo(tracked);
                if (!baseline)
                {
                    AddListener(changes, ListenerEventKind.Started, info, nowUnixMs);
                }

                CheckExposed(changes, info, nowUnixMs);
            }
            else if (!baseline)
            {
                AddConnection(changes, new ConnectionEvent { Kind = ConnectionEventKind.Opened, Connection = ConnectionInfo(tracked, closedBy: null) }, nowUnixMs);
            }
        }

        // Gone: wait one scan for the notification, then declare it vanished.
        List<ulong>? gone = null;
        foreach (var (cookie, tracked) in _sockets)
        {
            if (_present.Contains(cookie))
            {
                continue;
            }

            if (!Observed(tracked.Socket.Protocol))
            {
                (gone ??= []).Add(cookie); // a protocol no longer observed: forgotten silently
                continue;
            }

            if (NotificationsActive && tracked.MissingScans++ == 0)
            {
                continue;
            }

            (gone ??= []).Add(cookie);
            Counters.Vanished++;
            Closed(changes, tracked, final: null, nowUnixMs, now);
        }

        gone?.ForEach(c => _sockets.Remove(c));
        ForgetOldCloses(now);
        owners.Map.Retain(_liveInodes.Contains);
        LastScan = time.GetUtcNow();
        changes.Sockets = _sockets.Count;
        changes.Duration = Stopwatch.GetElapsedTime(started);
        var micros = (long)changes.Duration.TotalMicroseconds;
        Counters.Scans++;
        Counters.LastScanMicros = micros;
        Counters.MaxScanMicros = Math.Max(Counters.MaxScanMicros, micros);
        return changes;
    }

    /// <summary>Destroy notifications: the final counters of sockets the kernel freed.</summary>
    public NetworkChanges Destroyed(IReadOnlyList<InetSocket> notifications)
    {
        var changes = new NetworkChanges();
        var now = time.GetTimestamp();
        var nowUnixMs = UnixMs();
        foreach (var s in notifications)
        {
            if (!Observed(s.Protocol))
            {
                continue;
            }

            if (_sockets.Remove(s.Cookie, out var tracked))
            {
                Closed(changes, tracked, s, nowUnixMs, now);
                continue;
            }

            if (_recentlyClosed.ContainsKey(s.Cookie))
            {
                Counters.DuplicateCloses++;
                continue;
            }

            if (s.RemotePort == 0)
            {
                Counters.UnconnectedDestroyed++; // a listener or an unconnected socket never seen: no event
                continue;
            }

            // No byte acknowledged or received, not even a SYN: a connect that failed, no connection
            // to report. Not for an accepted socket: it exists only once the handshake completed, and
            // its own SYN-ACK is not counted in bytes_acked (a peer that connects and resets reads 0, 0).
            if (s.Protocol == ProtocolType.Tcp && s.Tcp is { BytesAcked: 0, BytesReceived: 0 } && DirectionOf(s) != Direction.Inbound)
            {
                Counters.NeverEstablished++;
                continue;
            }

            // Opened and closed between two scans: exact counters, no process.
            Counters.ClosedUnseen++;
            Counters.Unattributed++;
            var unseen = new TrackedSocket { Socket = s, Owner = SocketOwners.Unseen(), Direction = DirectionOf(s) };
            Closed(changes, unseen, s, nowUnixMs, now);
        }

        changes.Sockets = _sockets.Count;
        return changes;
    }

    private void Closed(NetworkChanges changes, TrackedSocket tracked, InetSocket? final, ulong nowUnixMs, long now)
    {
        _recentlyClosed[tracked.Socket.Cookie] = now;
        if (tracked.IsListener)
        {
            AddListener(changes, ListenerEventKind.Stopped, ListenerInfo(tracked), nowUnixMs);
            return;
        }

        var known = tracked.FirstSeenTimestamp != 0 && !tracked.SeenFromStart;
        AddConnection(changes, new ConnectionEvent
        {
            Kind = ConnectionEventKind.Closed,
            Connection = ConnectionInfo(tracked, final),
            DurationKnown = known,
            DurationMs = known ? (ulong)time.GetElapsedTime(tracked.FirstSeenTimestamp, now).TotalMilliseconds : 0,
            CloseSource = final is null ? "vanished" : "destroyed",
        }, nowUnixMs);
    }

    private void ForgetOldCloses(long now)
    {
        List<ulong>? old = null;
        foreach (var (cookie, at) in _recentlyClosed)
        {
            if (time.GetElapsedTime(at, now) > RememberClosed)
            {
                (old ??= []).Add(cookie);
            }
        }

        old?.ForEach(c => _recentlyClosed.Remove(c));
    }

    private void Tally(SockDiagDumpResult result)
    {
        Counters.MalformedAnswers += result.Malformed;
        if (result.Interrupted)
        {
            Counters.DumpsInterrupted++;
        }
    }

    private bool Observed(ProtocolType protocol) => protocol == ProtocolType.Tcp ? settings.Tcp : protocol == ProtocolType.Udp && settings.Udp;

    private ulong UnixMs() => (ulong)time.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>A TCP socket in LISTEN, or an unconnected UDP socket bound to a port.</summary>
    internal static bool IsListener(in InetSocket s) =>
        s.Protocol == ProtocolType.Tcp ? s.State == SocketState.Listen : s.State == SocketState.Close && s.RemotePort == 0 && s.LocalPort != 0;

    /// <summary>A TCP socket past the handshake with a peer, or a connected UDP socket.</summary>
    internal static bool IsConnection(in InetSocket s) =>
        s.RemotePort != 0 && (s.Protocol == ProtocolType.Tcp
            ? s.State is not (SocketState.Listen or SocketState.SynSent or SocketState.SynRecv or SocketState.NewSynRecv or SocketState.TimeWait or SocketState.Close)
            : s.State == SocketState.Established);

    /// <summary>Inbound when the local port is one this host listens on (for the protocol), else outbound.</summary>
    private Direction DirectionOf(in InetSocket s) => _listeningPorts.Contains((s.Protocol, s.LocalPort)) ? Direction.Inbound : Direction.Outbound;
}
