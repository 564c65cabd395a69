using System.Threading.Channels;
using DaemonEye.Client;
using DaemonEye.Native;
using DaemonEye.Native.Netlink;
using DaemonEye.Native.SockDiag;
using DaemonEye.Protocol.Network.V1;
using DaemonEye.Topics;
using Google.Protobuf;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace DaemonEye.Collectors.Netmond;

/// <summary>
/// netmond's work: a sock_diag scan every scan interval (connections opened, listeners started and
/// stopped, sockets gone without a notification) and the kernel's destroy notifications as they
/// come (connections closed with their final counters), published on events.network.* within the
/// rate budget; the network.snapshot task, HealthCheck and UpdateConfig (NetworkMonitor.Rpc.cs).
/// The notifications are read on a thread of their own into a channel; scans, notifications and
/// snapshots are serialized by one lock.
/// </summary>
internal sealed partial class NetworkMonitor(
    ICollectorContext collector,
    NetmondSettings settings,
    SocketTable table,
    EventBudget budget,
    TimeProvider time,
    ILogger<NetworkMonitor> logger) : BackgroundService
{
    public const string ConnectionTopic = WellKnownTopics.NetworkConnection;
    public const string ListenerTopic = WellKnownTopics.NetworkListener;
    public const string AnomalyTopic = WellKnownTopics.NetworkAnomaly;
    public const string CoalescedTopic = WellKnownTopics.NetworkCoalesced;
    public const string SnapshotTaskType = "network.snapshot";

    private readonly SemaphoreSlim _lock = new(1, 1);
    private readonly TaskCompletionSource _baseline = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Channel<List<InetSocket>> _destroyed = Channel.CreateUnbounded<List<InetSocket>>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    private SockDiagDestroyListener? _listener;
    private PeriodicTimer? _timer;
    private long _published;
    private long _publishFailures;
    private long _notificationBatches;
    private string _notifications = "not started";

    /// <summary>The network namespace observed (inode of /proc/self/ns/net).</summary>
    public ulong NetworkNamespace { get; } = ReadNamespace();

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        Thread? reader = null;
        Task? consumer = null;
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        try
        {
            _listener = SockDiagDestroyListener.Open(tcp: true, udp: true, settings.DestroyQueueBytes);
            table.NotificationsActive = true;
            _notifications = "active";
            reader = new Thread(() => ReadNotifications(_listener, stop.Token)) { IsBackground = true, Name = "netmond destroy notifications" };
            reader.Start();
            consumer = Task.Run(() => ConsumeNotificationsAsync(stop.Token), CancellationToken.None);
        }
        catch (KernelException e)
        {
            _notifications = $"unavailable: {e.Message}";
            LogNoNotifications(logger, e.Message);
        }

        try
        {
            NetworkChanges baseline;
            await _lock.WaitAsync(stoppingToken).ConfigureAwait(false);
            try
            {
                baseline = table.Scan(stoppingToken);
            }
            finally
            {
                _lock.Release();
            }

            _baseline.TrySetResult();
            LogStarted(logger, collector.CollectorId, baseline.Sockets, (long)baseline.Duration.TotalMicroseconds, settings.ScanInterval.TotalMilliseconds, NetworkNamespace, _notifications);
            await PublishAsync(baseline, stoppingToken).ConfigureAwait(false);

            _timer = new PeriodicTimer(settings.ScanInterval, time);
            while (await _timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                await ScanAndPublishAsync(stoppingToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            _destroyed.Writer.TryComplete();
            reader?.Join();
            if (consumer is not null)
            {
                await consumer.ConfigureAwait(false);
            }
        }
    }

    private async Task<NetworkChanges> ScanAndPublishAsync(CancellationToken cancellationToken)
    {
        NetworkChanges changes;
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            changes = table.Scan(cancellationToken);
        }
        finally
        {
            _lock.Release();
        }

        LogScan(logger, changes.Sockets, (long)changes.Duration.TotalMicroseconds, changes.Connections.Count, changes.Listeners.Count);
        await PublishAsync(changes, cancellationToken).ConfigureAwait(false);
        return changes;
    }

    /// <summary>The notification thread: waits on the kernel, drains what is queued, hands batches over.</summary>
    private void ReadNotifications(SockDiagDestroyListener listener, CancellationToken cancellationToken)
    {
        try
        {
            while (true)
            {
                var batch = new List<InetSocket>();
                var status = listener.Receive(batch, cancellationToken);
                while (status != NetlinkReceiveStatus.Empty && batch.Count < 4096)
                {
                    if (status == NetlinkReceiveStatus.Overrun && listener.Socket.Overruns == 1)
                    {
                        LogOverrun(logger, settings.DestroyQueueBytes);
                    }

                    status = listener.TryReceive(batch);
                }

                if (batch.Count > 0)
                {
                    _destroyed.Writer.TryWrite(batch);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
        catch (Exception e) when (e is KernelException or ObjectDisposedException)
        {
            _notifications = $"failed: {e.Message}";
            table.NotificationsActive = false;
            LogNotificationsFailed(logger, e.Message);
        }
    }

    private async Task ConsumeNotificationsAsync(CancellationToken cancellationToken)
    {
        try
        {
            await _baseline.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
            await foreach (var batch in _destroyed.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                Interlocked.Increment(ref _notificationBatches);
                NetworkChanges changes;
                await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
                try
                {
                    changes = table.Destroyed(batch);
                }
                finally
                {
                    _lock.Release();
                }

                await PublishAsync(changes, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    private async Task PublishAsync(NetworkChanges changes, CancellationToken cancellationToken)
    {
        foreach (var e in changes.Anomalies)
        {
            LogAnomaly(logger, e.Kind, e.Description);
            await PublishOneAsync(AnomalyTopic, e, cancellationToken).ConfigureAwait(false);
        }

        foreach (var e in changes.Listeners)
        {
            await BudgetedAsync(ListenerTopic, e, cancellationToken).ConfigureAwait(false);
        }

        foreach (var e in changes.Connections)
        {
            await BudgetedAsync(ConnectionTopic, e, cancellationToken).ConfigureAwait(false);
        }

        if (budget.Roll() is { } summary)
        {
            await PublishOneAsync(CoalescedTopic, summary, cancellationToken).ConfigureAwait(false);
        }
    }

    private async ValueTask BudgetedAsync(string topic, IMessage e, CancellationToken cancellationToken)
    {
        var take = budget.TryTake(e, out var finished);
        if (finished is not null)
        {
            await PublishOneAsync(CoalescedTopic, finished, cancellationToken).ConfigureAwait(false);
        }

        if (take)
        {
            await PublishOneAsync(topic, e, cancellationToken).ConfigureAwait(false);
        }
    }

    private async ValueTask PublishOneAsync(string topic, IMessage message, CancellationToken cancellationToken)
    {
        try
        {
            await collector.PublishAsync(topic, message, cancellationToken).ConfigureAwait(false);
            Interlocked.Increment(ref _published);
        }
        catch (Exception e) when (e is BusException or ObjectDisposedException or InvalidOperationException)
        {
            if (Interlocked.Increment(ref _publishFailures) == 1)
            {
                LogPublishFailed(logger, topic, e.Message);
            }
        }
    }

    private static ulong ReadNamespace()
    {
        try
        {
            var link = new FileInfo("/proc/self/ns/net").LinkTarget ?? string.Empty; // net:[4026531840]
            return link.StartsWith("net:[", StringComparison.Ordinal) && ulong.TryParse(link.AsSpan(5, link.Length - 6), out var inode) ? inode : 0;
        }
        catch (IOException)
        {
            return 0;
        }
    }

    public override void Dispose()
    {
        _timer?.Dispose();
        _listener?.Dispose();
        _lock.Dispose();
        base.Dispose();
    }

    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "netmond {CollectorId}: baseline of {Sockets} sockets in {ScanMicros} us; scanning every {IntervalMs} ms in network namespace {Namespace}; close notifications {Notifications}")]
    private static partial void LogStarted(ILogger logger, string collectorId, int sockets, long scanMicros, double intervalMs, ulong @namespace, string notifications);

    [LoggerMessage(EventId = 2, Level = LogLevel.Debug, Message = "Scan: {Sockets} sockets in {ScanMicros} us; {Connections} connection, {Listeners} listener events")]
    private static partial void LogScan(ILogger logger, int sockets, long scanMicros, int connections, int listeners);

    [LoggerMessage(EventId = 3, Level = LogLevel.Warning, Message = "Close notifications unavailable ({Reason}); closes are seen at the next scan, with the counters of the last one (needs CAP_NET_ADMIN)")]
    private static partial void LogNoNotifications(ILogger logger, string reason);

    [LoggerMessage(EventId = 4, Level = LogLevel.Warning, Message = "The kernel dropped close notifications (queue of {QueueBytes} bytes full); the sockets concerned are reported at the next scan as vanished. Further overruns are counted in the HealthCheck details")]
    private static partial void LogOverrun(ILogger logger, int queueBytes);

    [LoggerMessage(EventId = 5, Level = LogLevel.Error, Message = "Close notifications stopped: {Reason}; closes are now seen at the next scan")]
    private static partial void LogNotificationsFailed(ILogger logger, string reason);

    [LoggerMessage(EventId = 6, Level = LogLevel.Warning, Message = "Anomaly {Kind}: {Description}")]
    private static partial void LogAnomaly(ILogger logger, AnomalyKind kind, string description);

    [LoggerMessage(EventId = 7, Level = LogLevel.Warning, Message = "Could not publish on {Topic}: {Reason} (further failures are counted in the HealthCheck details, not logged)")]
    private static partial void LogPublishFailed(ILogger logger, string topic, string reason);
}
