using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Net.Sockets;
using DaemonEye.Configuration;
using DaemonEye.Gateway;
using DaemonEye.Gateway.Metrics;
using DaemonEye.Gateway.Rpc;
using DaemonEye.Gateway.Security;
using DaemonEye.Protocol;
using DaemonEye.Protocol.V1;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using ErrorCode = DaemonEye.Protocol.V1.ErrorCode;

namespace DaemonEye.Server.Tests;

/// <summary>
/// The bus connections' time limits on a fake clock (which timeout is due when, the sweeper, a real
/// connection over a real socket cut for its missing Hello), the accept loop's backoff, and the
/// connection places reserved for supervised collectors.
/// </summary>
public sealed class ConnectionLimitsTests
{
    private static readonly TimeoutSettings Settings = new(TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(30), TimeSpan.FromSeconds(300));
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 25, 12, 0, 0, TimeSpan.Zero));

    private ReadDeadlines NewDeadlines(TimeoutSettings? settings = null) => new(_time, settings ?? Settings, _time.GetTimestamp());

    [Fact]
    public void Without_a_Hello_the_handshake_timeout_is_due_at_the_configured_time_and_not_before()
    {
        var deadlines = NewDeadlines();
        Assert.Equal(ConnectionTimeout.None, deadlines.BeginWait(completedFrames: false, partialFrame: false));

        _time.Advance(TimeSpan.FromSeconds(9.999));
        Assert.False(deadlines.TryCut(_time.GetTimestamp(), holdsSubscriptions: false));
        _time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.True(deadlines.TryCut(_time.GetTimestamp(), holdsSubscriptions: false));

        Assert.False(deadlines.EndWait());
        Assert.Equal(ConnectionTimeout.Handshake, deadlines.CutFor);
    }

    [Fact]
    public void A_Hello_sent_a_byte_at_a_time_still_has_to_be_complete_within_the_handshake_timeout()
    {
        var deadlines = NewDeadlines();
        for (var second = 0; second < 9; second++)
        {
            Assert.Equal(ConnectionTimeout.None, deadlines.BeginWait(completedFrames: false, partialFrame: true));
            _time.Advance(TimeSpan.FromSeconds(1));
            Assert.True(deadlines.EndWait());
        }

        // The read loop's own check as it goes back to waiting: already due, it cuts without waiting.
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(ConnectionTimeout.Handshake, deadlines.BeginWait(completedFrames: false, partialFrame: true));
        Assert.False(deadlines.EndWait());
    }

    [Fact]
    public void After_the_Hello_a_frame_begun_must_end_within_the_frame_timeout_however_slowly_its_bytes_come()
    {
        var deadlines = NewDeadlines();
        deadlines.Welcomed();
        Assert.Equal(ConnectionTimeout.None, deadlines.BeginWait(completedFrames: true, partialFrame: true));

        // One byte a second: every read wakes the loop, none completes the frame; the clock keeps running.
        for (var second = 1; second < 30; second++)
        {
            _time.Advance(TimeSpan.FromSeconds(1));
            Assert.False(deadlines.TryCut(_time.GetTimestamp(), holdsSubscriptions: true));
            Assert.True(deadlines.EndWait());
            Assert.Equal(ConnectionTimeout.None, deadlines.BeginWait(completedFrames: false, partialFrame: true));
        }

        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.True(deadlines.TryCut(_time.GetTimestamp(), holdsSubscriptions: true));
        Assert.False(deadlines.EndWait());
        Assert.Equal(ConnectionTimeout.Frame, deadlines.CutFor);
    }

    [Fact]
    public void A_completed_frame_restarts_the_frame_clock_for_the_next_partial_one()
    {
        var deadlines = NewDeadlines();
        deadlines.Welcomed();
        deadlines.BeginWait(completedFrames: false, partialFrame: true);
        _time.Advance(TimeSpan.FromSeconds(29));
        Assert.True(deadlines.EndWait());
        deadlines.BeginWait(completedFrames: true, partialFrame: true); // that frame ended; the next began

        _time.Advance(TimeSpan.FromSeconds(29));
        Assert.False(deadlines.TryCut(_time.GetTimestamp(), holdsSubscriptions: false));
        Assert.Equal(TimeSpan.FromSeconds(29), deadlines.PartialFrameAge(_time.GetTimestamp()));
    }

    [Fact]
    public void Time_the_agent_spends_on_what_it_read_never_counts_against_the_peer()
    {
        var deadlines = NewDeadlines();
        deadlines.Welcomed();
        deadlines.BeginWait(completedFrames: true, partialFrame: false);
        Assert.True(deadlines.EndWait()); // a read came; the loop is busy (grain calls, back-pressure)

        _time.Advance(TimeSpan.FromSeconds(600));
        Assert.False(deadlines.TryCut(_time.GetTimestamp(), holdsSubscriptions: false));

        // Back to waiting, a partial frame's clock starts now, not when its bytes were read.
        Assert.Equal(ConnectionTimeout.None, deadlines.BeginWait(completedFrames: true, partialFrame: true));
        _time.Advance(TimeSpan.FromSeconds(29));
        Assert.False(deadlines.TryCut(_time.GetTimestamp(), holdsSubscriptions: false));
    }

    [Fact]
    public void Idle_applies_to_a_connection_without_subscriptions_and_any_frame_such_as_a_Ping_resets_it()
    {
        var deadlines = NewDeadlines();
        deadlines.Welcomed();
        deadlines.BeginWait(completedFrames: true, partialFrame: false);

        _time.Advance(TimeSpan.FromSeconds(299));
        Assert.True(deadlines.EndWait());
        deadlines.BeginWait(completedFrames: true, partialFrame: false); // a Ping

        _time.Advance(TimeSpan.FromSeconds(299));
        Assert.False(deadlines.TryCut(_time.GetTimestamp(), holdsSubscriptions: false));
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(ConnectionTimeout.Idle, deadlines.Due(_time.GetTimestamp(), holdsSubscriptions: false));

        // A subscriber legitimately only listens: never idle.
        _time.Advance(TimeSpan.FromDays(1));
        Assert.False(deadlines.TryCut(_time.GetTimestamp(), holdsSubscriptions: true));
        Assert.True(deadlines.TryCut(_time.GetTimestamp(), holdsSubscriptions: false));
        Assert.Equal(ConnectionTimeout.Idle, deadlines.CutFor);
    }

    [Fact]
    public void With_idle_timeout_0_an_idle_connection_stays()
    {
        var deadlines = NewDeadlines(Settings with { Idle = TimeSpan.Zero });
        deadlines.Welcomed();
        deadlines.BeginWait(completedFrames: true, partialFrame: false);

        _time.Advance(TimeSpan.FromDays(7));
        Assert.False(deadlines.TryCut(_time.GetTimestamp(), holdsSubscriptions: false));
    }

    [Fact]
    public void The_sweep_period_is_a_quarter_of_the_shortest_timeout_within_10_ms_and_1_s()
    {
        Assert.Equal(TimeSpan.FromSeconds(1), Settings.SweepPeriod);
        Assert.Equal(TimeSpan.FromMilliseconds(250), new TimeoutSettings(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2), TimeSpan.Zero).SweepPeriod);
        Assert.Equal(TimeSpan.FromMilliseconds(125), new TimeoutSettings(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(0.5)).SweepPeriod);
        Assert.Equal(TimeSpan.FromMilliseconds(10), new TimeoutSettings(TimeSpan.FromMilliseconds(10), TimeSpan.FromSeconds(2), TimeSpan.Zero).SweepPeriod);
    }

    [Fact]
    public void The_guard_sweeps_every_tracked_connection_each_period_until_it_is_untracked()
    {
        using var guard = new ConnectionGuard(new TimeoutSettings(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2), TimeSpan.Zero), _time, NullLogger.Instance);
        var first = new CountingConnection(1);
        var second = new CountingConnection(2);
        guard.Track(first);
        guard.Track(second);
        guard.Start();

        _time.Advance(TimeSpan.FromMilliseconds(249));
        Assert.Equal(0, first.Checks);
        _time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal((1, 1), (first.Checks, second.Checks));

        guard.Untrack(2);
        _time.Advance(TimeSpan.FromMilliseconds(250));
        Assert.Equal((2, 1), (first.Checks, second.Checks));
        Assert.Equal(1, guard.Count);
    }

    [Fact]
    public void The_guard_allows_a_budget_of_connection_warnings_and_logs_the_count_of_the_rest_when_the_window_ends()
    {
        var logger = new CapturingLogger();
        using var guard = new ConnectionGuard(Settings, _time, logger);
        guard.Start();

        var allowed = Enumerable.Range(0, 100).Count(_ => guard.MayWarn());
        Assert.Equal(ConnectionGuard.WarningsPerWindow, allowed);
        Assert.Empty(logger.Lines);

        _time.Advance(ConnectionGuard.WarningWindow);
        var line = Assert.Single(logger.Lines);
        Assert.StartsWith($"{100 - ConnectionGuard.WarningsPerWindow} further connection warnings were not logged", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_real_connection_that_sends_no_Hello_is_cut_at_the_handshake_timeout_with_an_error_naming_the_key_and_counted()
    {
        using var services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var stats = new GatewayStatistics();
        var directory = new ConnectionDirectory();
        using var router = new RpcRouter(Options.Create(new RpcOptions()), _time, new DaemonEye.Gateway.Collectors.CollectorDirectory(_time, TimeSpan.FromSeconds(5)), NullLogger<RpcRouter>.Instance);
        var access = new AccessControl(Options.Create(new SecurityOptions()), new SpawnedCollectors(), stats, NullLogger<AccessControl>.Instance);
        var metrics = new BusMetrics(services.GetRequiredService<IMeterFactory>(), stats, directory);
        var logger = new CapturingLogger();
        using var guard = new ConnectionGuard(Settings, _time, logger);
        guard.Start();

        var dir = Directory.CreateTempSubdirectory("de-limits-");
        try
        {
            var path = Path.Combine(dir.FullName, "bus.sock");
            using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            listener.Bind(new UnixDomainSocketEndPoint(path));
            listener.Listen();
            using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            await client.ConnectAsync(new UnixDomainSocketEndPoint(path));
            var server = await listener.AcceptAsync();
            var connection = new BusConnection(1, server, new BrokerOptions(), grains: null!, directory, router, stats, logger, metrics, access, new DaemonEye.Grains.TopicRoutes(directory, _time), guard);
            var run = connection.RunAsync(CancellationToken.None);

            _time.Advance(TimeSpan.FromSeconds(10));

            var error = (await ReadFrameAsync(client)).Error;
            Assert.Equal(ErrorCode.LimitExceeded, error.Code);
            Assert.True(error.Fatal);
            Assert.Equal("no complete Hello within broker.handshake_timeout_seconds (10 s) of connecting; the first frame must be a Hello", error.Message);
            await run.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(0, await client.ReceiveAsync(new byte[1], SocketFlags.None)); // closed
            Assert.Equal(1, stats.RefusedBy(Limit.HandshakeTimeout));
            Assert.Contains(logger.Lines, l => l.StartsWith("Connection 1 ((before hello)) closed by broker.handshake_timeout_seconds", StringComparison.Ordinal));
            Assert.Equal(0, guard.Count);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void The_accept_backoff_doubles_from_5_ms_to_1_s_and_an_episode_ends_after_2_s_without_a_failure_with_its_count_and_duration()
    {
        var backoff = new AcceptBackoff(_time);
        var delays = new List<double>();
        for (var i = 0; i < 10; i++)
        {
            delays.Add(backoff.Failed(out var first).TotalMilliseconds);
            Assert.Equal(i == 0, first);
            _time.Advance(TimeSpan.FromMilliseconds(delays[^1]));
        }

        Assert.Equal([5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000], delays);

        // Accepts work again, but the episode lasts until none has failed for 2 s.
        _time.Advance(TimeSpan.FromMilliseconds(999));
        Assert.False(backoff.TryEnd(out _, out _));
        _time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.True(backoff.TryEnd(out var failures, out var duration));
        Assert.Equal(10, failures);
        Assert.Equal(TimeSpan.FromMilliseconds(2275), duration); // first failure to last
        Assert.False(backoff.InEpisode);
        Assert.False(backoff.TryEnd(out _, out _)); // reported once

        Assert.Equal(TimeSpan.FromMilliseconds(5), backoff.Failed(out var again));
        Assert.True(again); // a new episode starts from the first delay
    }

    [Fact]
    public void Near_the_limit_accepts_that_work_between_failures_do_not_end_the_episode_and_restart_the_delays()
    {
        var backoff = new AcceptBackoff(_time);
        Assert.Equal(TimeSpan.FromMilliseconds(5), backoff.Failed(out var first));
        Assert.True(first);
        Assert.Equal(TimeSpan.FromMilliseconds(10), backoff.Failed(out _));
        for (var i = 0; i < 8; i++)
        {
            // One descriptor freed: an accept works (no end: a failure was just now), the next fails.
            _time.Advance(TimeSpan.FromMilliseconds(5));
            backoff.Succeeded();
            Assert.False(backoff.TryEnd(out _, out _));
            Assert.Equal(TimeSpan.FromMilliseconds(5), backoff.Failed(out first));
            Assert.False(first); // one episode: one line when it began, one when it ends
        }

        _time.Advance(AcceptBackoff.Quiet);
        Assert.True(backoff.TryEnd(out var failures, out var duration));
        Assert.Equal(10, failures);
        Assert.Equal(TimeSpan.FromMilliseconds(40), duration);
    }

    [Fact]
    public void Reserved_places_are_for_privileged_peers_only_who_fall_back_to_ordinary_ones()
    {
        var slots = new ConnectionSlots(max: 3, reserved: 1);
        Assert.All(Enumerable.Range(0, 3), _ => Assert.Equal(SlotKind.Ordinary, slots.TryTake(privileged: false)));
        Assert.Equal(SlotKind.None, slots.TryTake(privileged: false));

        Assert.Equal(SlotKind.Reserved, slots.TryTake(privileged: true));
        Assert.Equal(SlotKind.None, slots.TryTake(privileged: true));
        Assert.Equal(4, slots.Open);

        slots.Release(SlotKind.Ordinary);
        Assert.Equal(SlotKind.Ordinary, slots.TryTake(privileged: true));
        slots.Release(SlotKind.Reserved);
        Assert.Equal(SlotKind.None, slots.TryTake(privileged: false));
        Assert.Equal(SlotKind.Reserved, slots.TryTake(privileged: true));
    }

    private static async Task<Envelope> ReadFrameAsync(Socket socket)
    {
        var buffer = new byte[64 * 1024];
        var filled = 0;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (true)
        {
            var sequence = new ReadOnlySequence<byte>(buffer, 0, filled);
            if (Framing.TryReadFrame(ref sequence, buffer.Length, out var frame, out _) == FrameStatus.Complete)
            {
                return Envelope.Parser.ParseFrom(frame);
            }

            var read = await socket.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None, timeout.Token);
            Assert.NotEqual(0, read);
            filled += read;
        }
    }

    private sealed class CountingConnection(long id) : ITimedConnection
    {
        private int _checks;

        public long Id => id;

        public int Checks => Volatile.Read(ref _checks);

        public void CheckTimeouts(long now) => Interlocked.Increment(ref _checks);
    }

    /// <summary>Every formatted line at Information and above.</summary>
    private sealed class CapturingLogger : ILogger
    {
        private readonly ConcurrentQueue<string> _lines = new();

        public IReadOnlyList<string> Lines => [.. _lines];

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel))
            {
                _lines.Enqueue(formatter(state, exception));
            }
        }
    }
}
