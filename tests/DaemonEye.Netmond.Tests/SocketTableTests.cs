using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using DaemonEye.Collectors.Netmond;
using DaemonEye.Native.SockDiag;
using DaemonEye.Protocol.Network.V1;
using Microsoft.Extensions.Time.Testing;

namespace DaemonEye.Netmond.Tests;

/// <summary>
/// netmond's socket table against the real kernel: real loopback sockets, real child processes
/// (bash with /dev/tcp, held at each step by a line on its stdin: phase barriers, no sleeps), the
/// kernel's destroy notifications. Time is a <see cref="FakeTimeProvider"/>: a scan is "one
/// interval", and durations are exactly what the test advanced.
/// </summary>
public sealed class SocketTableTests : IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);
    private readonly FakeTimeProvider _time = new(DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000));
    private readonly SockDiagSocket _diag = SockDiagSocket.Open();
    private readonly NetmondSettings _settings = new();
    private readonly SocketTable _table;
    private readonly List<Process> _children = [];

    public SocketTableTests() => _table = new SocketTable(_diag, new SocketOwners(), _settings, _time, "netmond");

    public void Dispose()
    {
        foreach (var child in _children)
        {
            if (!child.HasExited)
            {
                child.Kill();
                child.WaitForExit();
            }

            child.Dispose();
        }

        _diag.Dispose();
    }

    private Process StartBash(string script)
    {
        var child = Process.Start(new ProcessStartInfo("bash", ["-c", script]) { RedirectStandardInput = true, UseShellExecute = false })!;
        _children.Add(child);
        return child;
    }

    private static Socket Listen(IPAddress address, out int port)
    {
        var listener = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(address, 0));
        listener.Listen(4096);
        port = ((IPEndPoint)listener.LocalEndPoint!).Port;
        return listener;
    }

    /// <summary>Feeds destroy notifications to the table until <paramref name="done"/> holds for the events so far.</summary>
    private List<ConnectionEvent> DrainCloses(SockDiagDestroyListener listener, List<ConnectionEvent> events, Func<List<ConnectionEvent>, bool> done, List<ListenerEvent>? listeners = null)
    {
        using var timeout = new CancellationTokenSource(Patience);
        var batch = new List<InetSocket>();
        while (!done(events))
        {
            batch.Clear();
            listener.Receive(batch, timeout.Token);
            var changes = _table.Destroyed(batch);
            events.AddRange(changes.Connections);
            listeners?.AddRange(changes.Listeners);
        }

        return events;
    }

    [RootFact]
    public async Task A_short_connection_of_a_child_is_closed_with_its_pid_duration_and_exact_byte_counts()
    {
        using var destroyed = SockDiagDestroyListener.Open(tcp: true, udp: true, 8 << 20);
        _table.NotificationsActive = true;
        using var listener = Listen(IPAddress.Loopback, out var port);
        _table.Scan(CancellationToken.None); // baseline

        const int Sent = 7001;
        const int Received = 1234;
        var child = StartBash($"exec 3<>/dev/tcp/127.0.0.1/{port} || exit 9; read -r go; printf '%*s' {Sent} '' >&3; read -r -N {Received} x <&3; exec 3>&-; read -r end");
        using var accepted = await listener.AcceptAsync();
        var clientPort = ((IPEndPoint)accepted.RemoteEndPoint!).Port;

        // One interval later netmond has seen it open, and named the child.
        _time.Advance(_settings.ScanInterval);
        var opened = _table.Scan(CancellationToken.None).Connections;
        var outbound = Assert.Single(opened, e => e.Connection.Local.Port == clientPort);
        Assert.Equal(ConnectionEventKind.Opened, outbound.Kind);
        Assert.Equal(Direction.Outbound, outbound.Connection.Direction);
        Assert.Equal((uint)child.Id, outbound.Connection.Owner.Pid);
        Assert.Equal("bash", outbound.Connection.Owner.Name);
        Assert.True(outbound.Connection.Owner.Attributed);
        Assert.Equal("127.0.0.1", outbound.Connection.Remote.Address);
        Assert.Equal((uint)port, outbound.Connection.Remote.Port);
        var inbound = Assert.Single(opened, e => e.Connection.Remote.Port == clientPort);
        Assert.Equal(Direction.Inbound, inbound.Connection.Direction);
        Assert.Equal((uint)Environment.ProcessId, inbound.Connection.Owner.Pid);

        // It lives 10 ms more on the clock: the child sends, the test answers, the child closes.
        _time.Advance(TimeSpan.FromMilliseconds(10));
        await child.StandardInput.WriteLineAsync("go");
        await child.StandardInput.FlushAsync();
        var buffer = new byte[Sent];
        for (var got = 0; got < Sent;)
        {
            got += await accepted.ReceiveAsync(buffer.AsMemory(got));
        }

        await accepted.SendAsync(new byte[Received].Select(_ => (byte)'y').ToArray());
        Assert.Equal(0, await accepted.ReceiveAsync(buffer)); // the child's FIN
        accepted.Close();

        var events = DrainCloses(destroyed, [], e => e.Count(c => c.Connection.Local.Port == clientPort || c.Connection.Remote.Port == clientPort) == 2);
        var closed = Assert.Single(events, e => e.Connection.Local.Port == clientPort);
        Assert.Equal(ConnectionEventKind.Closed, closed.Kind);
        Assert.Equal("destroyed", closed.CloseSource);
        Assert.Equal((uint)child.Id, closed.Connection.Owner.Pid);
        Assert.Equal((ulong)Sent, closed.Connection.BytesSent);
        Assert.Equal((ulong)Received, closed.Connection.BytesReceived);
        Assert.True(closed.DurationKnown);
        Assert.Equal(10UL, closed.DurationMs);
        Assert.Equal(Direction.Outbound, closed.Connection.Direction);
        var serverSide = Assert.Single(events, e => e.Connection.Remote.Port == clientPort);
        Assert.Equal(((ulong)Received, (ulong)Sent), (serverSide.Connection.BytesSent, serverSide.Connection.BytesReceived));
        Assert.Equal(0, destroyed.Socket.Overruns);
    }

    [RootFact]
    public async Task A_connection_opened_and_closed_between_two_scans_is_reported_with_exact_bytes_and_said_unattributed()
    {
        using var destroyed = SockDiagDestroyListener.Open(tcp: true, udp: true, 8 << 20);
        using var listener = Listen(IPAddress.Loopback, out var port);
        _table.Scan(CancellationToken.None);

        var child = StartBash($"exec 3<>/dev/tcp/127.0.0.1/{port} || exit 9; printf '%*s' 512 '' >&3; exec 3>&-");
        using var accepted = await listener.AcceptAsync();
        var clientPort = ((IPEndPoint)accepted.RemoteEndPoint!).Port;
        var buffer = new byte[1024];
        var got = 0;
        int n;
        while ((n = await accepted.ReceiveAsync(buffer.AsMemory(got))) > 0)
        {
            got += n;
        }

        accepted.Close();
        var events = DrainCloses(destroyed, [], e => e.Any(c => c.Connection.Local.Port == clientPort));
        var closed = Assert.Single(events, e => e.Connection.Local.Port == clientPort);
        Assert.Equal(512UL, closed.Connection.BytesSent);
        Assert.Equal(0UL, closed.Connection.BytesReceived);
        Assert.False(closed.Connection.Owner.Attributed);
        Assert.Equal(SocketOwners.NeverSeenAlive, closed.Connection.Owner.UnattributedReason);
        Assert.False(closed.DurationKnown);
        Assert.True(_table.Counters.ClosedUnseen >= 1);
        Assert.True(_table.Counters.Unattributed >= 1);
        await child.WaitForExitAsync();
    }

    [RootFact]
    public void A_wildcard_listener_appears_within_one_interval_flagged_and_its_close_is_reported()
    {
        using var destroyed = SockDiagDestroyListener.Open(tcp: true, udp: false, 8 << 20);
        _table.NotificationsActive = true;
        _settings.ExposedListenerAllow = ["sshd"];
        _table.Scan(CancellationToken.None);

        var listener = Listen(IPAddress.Any, out var port);
        _time.Advance(_settings.ScanInterval);
        var changes = _table.Scan(CancellationToken.None);
        var started = Assert.Single(changes.Listeners, e => e.Listener.Local.Port == port);
        Assert.Equal(ListenerEventKind.Started, started.Kind);
        Assert.Equal("0.0.0.0", started.Listener.Local.Address);
        Assert.Equal(BindScope.Wildcard, started.Listener.Scope);
        Assert.True(started.Listener.Exposed);
        Assert.Equal((uint)Environment.ProcessId, started.Listener.Owner.Pid);
        var anomaly = Assert.Single(changes.Anomalies, a => a.Listener.Local.Port == port);
        Assert.Equal(AnomalyKind.ExposedListenerNotAllowed, anomaly.Kind);
        Assert.Contains($"listens on tcp 0.0.0.0:{port}", anomaly.Description, StringComparison.Ordinal);

        // A loopback listener is neither exposed nor an anomaly.
        using var local = Listen(IPAddress.Loopback, out var localPort);
        _time.Advance(_settings.ScanInterval);
        changes = _table.Scan(CancellationToken.None);
        Assert.False(Assert.Single(changes.Listeners, e => e.Listener.Local.Port == localPort).Listener.Exposed);
        Assert.DoesNotContain(changes.Anomalies, a => a.Listener.Local.Port == localPort);

        listener.Dispose();
        var stopped = new List<ListenerEvent>();
        DrainCloses(destroyed, [], _ => stopped.Any(l => l.Listener.Local.Port == port), stopped);
        Assert.Equal(ListenerEventKind.Stopped, Assert.Single(stopped, l => l.Listener.Local.Port == port).Kind);
    }

    [Fact]
    public void Without_notifications_a_closed_listener_is_reported_stopped_at_the_next_scan()
    {
        _table.Scan(CancellationToken.None);
        var listener = Listen(IPAddress.IPv6Any, out var port);
        _table.Scan(CancellationToken.None);
        listener.Dispose();
        var changes = _table.Scan(CancellationToken.None);
        var stopped = Assert.Single(changes.Listeners, e => e.Listener.Local.Port == port);
        Assert.Equal(ListenerEventKind.Stopped, stopped.Kind);
        Assert.Equal(IpFamily.Ipv6, stopped.Listener.Family);
        Assert.Equal(BindScope.Wildcard, stopped.Listener.Scope);
        Assert.True(_table.Counters.Vanished >= 1);
    }

    [RootFact]
    public async Task An_accepted_connection_reset_by_its_peer_before_any_data_is_reported_closed_and_a_refused_connect_is_only_counted()
    {
        using var destroyed = SockDiagDestroyListener.Open(tcp: true, udp: false, 8 << 20);
        using var listener = Listen(IPAddress.Loopback, out var port);
        _table.Scan(CancellationToken.None);

        // A connect scan's way: handshake, then a reset (SO_LINGER 0), no data either way.
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { LingerState = new LingerOption(true, 0) };
        await client.ConnectAsync(listener.LocalEndPoint!);
        var clientPort = ((IPEndPoint)client.LocalEndPoint!).Port;
        using var accepted = await listener.AcceptAsync();
        client.Close();
        Assert.Equal(0, await accepted.ReceiveAsync(new byte[1]).ContinueWith(t => t.IsFaulted ? 0 : t.Result, TaskScheduler.Default));
        accepted.Close();
        var events = DrainCloses(destroyed, [], e => e.Any(c => c.Connection.Local.Port == port && c.Connection.Remote.Port == clientPort));
        var closed = Assert.Single(events, e => e.Connection.Local.Port == port && e.Connection.Remote.Port == clientPort);
        Assert.Equal(Direction.Inbound, closed.Connection.Direction);
        Assert.Equal(0UL, closed.Connection.BytesSent);
        Assert.Equal(0UL, closed.Connection.BytesReceived);

        // A connect to a port nobody listens on any more: refused, counted, not reported.
        listener.Close();
        var before = _table.Counters.NeverEstablished;
        using (var refused = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            var e = await Assert.ThrowsAsync<SocketException>(async () => await refused.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port)));
            Assert.Equal(SocketError.ConnectionRefused, e.SocketErrorCode);
        }

        using var timeout = new CancellationTokenSource(Patience);
        var batch = new List<InetSocket>();
        var refusedEvents = new List<ConnectionEvent>();
        var seen = false;
        while (!seen)
        {
            batch.Clear();
            destroyed.Receive(batch, timeout.Token);
            seen = batch.Any(s => s.RemotePort == port);
            refusedEvents.AddRange(_table.Destroyed(batch).Connections);
        }

        Assert.True(_table.Counters.NeverEstablished > before);
        Assert.DoesNotContain(refusedEvents, e => e.Connection.Remote.Port == port);
    }

    [RootFact]
    public async Task A_burst_of_2000_short_connections_is_reported_at_least_99_percent_and_the_rest_counted()
    {
        const int Connections = 2000;
        using var destroyed = SockDiagDestroyListener.Open(tcp: true, udp: false, 16 << 20);
        using var listener = Listen(IPAddress.Loopback, out var port);
        _table.Scan(CancellationToken.None);

        var clientPorts = new HashSet<int>();
        for (var i = 0; i < Connections; i++)
        {
            using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await client.ConnectAsync(listener.LocalEndPoint!);
            using var accepted = await listener.AcceptAsync();
            await client.SendAsync(new byte[100]);
            clientPorts.Add(((IPEndPoint)client.LocalEndPoint!).Port);
        }

        // Every connection closed; the notifications are queued (or some were dropped, and counted).
        var events = new List<ConnectionEvent>();
        var batch = new List<InetSocket>();
        using var timeout = new CancellationTokenSource(Patience);
        while (events.Count(e => clientPorts.Contains((int)e.Connection.Local.Port)) < Connections)
        {
            batch.Clear();
            var status = destroyed.Overruns() > 0 ? destroyed.TryReceive(batch) : destroyed.Receive(batch, timeout.Token);
            if (status == Native.Netlink.NetlinkReceiveStatus.Empty)
            {
                break; // overran and drained: what is missing was counted
            }

            events.AddRange(_table.Destroyed(batch).Connections);
        }

        var reported = events.Where(e => clientPorts.Contains((int)e.Connection.Local.Port)).ToList();
        Assert.True(reported.Count >= Connections * 99 / 100, $"{reported.Count} of {Connections} reported; overruns {destroyed.Socket.Overruns}");
        Assert.All(reported, e => Assert.Equal(100UL, e.Connection.BytesSent));
        Assert.True(reported.Count == Connections || destroyed.Socket.Overruns > 0, "connections missing without an overrun counted");
    }
}

internal static class ListenerExtensions
{
    public static long Overruns(this SockDiagDestroyListener listener) => listener.Socket.Overruns;
}
