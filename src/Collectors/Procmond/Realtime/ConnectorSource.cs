using System.Threading.Channels;
using DaemonEye.Native.Netlink;
using Microsoft.Extensions.Logging;

namespace DaemonEye.Collectors.Procmond.Realtime;

/// <summary>Opens the kernel's proc connector; the seam tests use to simulate a refusal.</summary>
internal delegate ProcConnector OpenProcConnector(int kernelReceiveBufferBytes);

/// <summary>
/// Reads the proc connector on its own thread and hands events to the monitor through a bounded
/// queue. Nothing is lost without a count: a kernel overrun (ENOBUFS) and an event that finds the
/// queue full are counted and ask for a reconciliation scan, which publishes what they hid.
/// </summary>
internal sealed partial class ConnectorSource : IDisposable
{
    private readonly ProcConnector _connector;
    private readonly Channel<ProcEvent> _queue;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private readonly Thread _thread;
    private readonly ManualResetEventSlim _reading = new(initialState: true);
    private long _queueFull;
    private long _reconciliations;
    private int _reconcile;
    private int _held;

    public ConnectorSource(ProcConnector connector, int capacity, ILogger logger)
    {
        _connector = connector;
        _logger = logger;
        _queue = Channel.CreateBounded<ProcEvent>(new BoundedChannelOptions(capacity) { SingleWriter = true, FullMode = BoundedChannelFullMode.Wait });
        _thread = new Thread(Run) { IsBackground = true, Name = "procmond proc connector" };
        _thread.Start();
    }

    public ChannelReader<ProcEvent> Events => _queue.Reader;

    public ProcConnector Connector => _connector;

    /// <summary>Events the queue had no room for: coalesced into the next reconciliation.</summary>
    public long QueueFull => Interlocked.Read(ref _queueFull);

    public long Reconciliations => Interlocked.Read(ref _reconciliations);

    /// <summary>Test hook: the reader stops before its next read (one it is waiting in still
    /// completes), so the kernel's queue fills and must overflow.</summary>
    internal void HoldReader() => _reading.Reset();

    /// <summary>Test hook: true while the reader waits in <see cref="HoldReader"/>'s hold.</summary>
    internal bool ReaderHeld => Volatile.Read(ref _held) == 1;

    /// <summary>Test hook: undoes <see cref="HoldReader"/>.</summary>
    internal void ReleaseReader() => _reading.Set();

    /// <summary>True (once) when events were lost since the last call: the caller reconciles.</summary>
    public bool TakeReconciliation()
    {
        if (Interlocked.Exchange(ref _reconcile, 0) == 0)
        {
            return false;
        }

        Interlocked.Increment(ref _reconciliations);
        return true;
    }

    private void Run()
    {
        var batch = new List<ProcEvent>(256);
        var writer = _queue.Writer;
        try
        {
            while (true)
            {
                batch.Clear();
                if (!_reading.IsSet)
                {
                    Volatile.Write(ref _held, 1);
                    _reading.Wait(_stop.Token);
                    Volatile.Write(ref _held, 0);
                }

                if (_connector.Read(batch, _stop.Token) == NetlinkReceiveStatus.Overrun)
                {
                    var overruns = _connector.Socket.Overruns;
                    if ((overruns & (overruns - 1)) == 0)
                    {
                        LogOverrun(_logger, overruns, _connector.Socket.KernelReceiveBufferBytes);
                    }

                    RequestReconciliation();
                    continue;
                }

                foreach (var e in batch)
                {
                    if (!writer.TryWrite(e))
                    {
                        Interlocked.Increment(ref _queueFull);
                        Volatile.Write(ref _reconcile, 1);
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
        catch (Exception e) when (e is Native.KernelException)
        {
            LogReadFailed(_logger, e.Message);
            RequestReconciliation();
        }
        finally
        {
            writer.TryComplete();
        }
    }

    private void RequestReconciliation()
    {
        Volatile.Write(ref _reconcile, 1);

        // Wake the monitor if it is idle (a no-op event); when the queue is full it is busy anyway.
        _queue.Writer.TryWrite(default);
    }

    public void Dispose()
    {
        _stop.Cancel();
        _thread.Join();
        _connector.Dispose();
        _stop.Dispose();
        _reading.Dispose();
    }

    [LoggerMessage(EventId = 20, Level = LogLevel.Warning, Message = "The kernel dropped process events: its queue for procmond overflowed (ENOBUFS, {Overruns} times so far; queue {QueueBytes} bytes). Reconciling with a /proc scan; logged again at every power of two.")]
    private static partial void LogOverrun(ILogger logger, long overruns, int queueBytes);

    [LoggerMessage(EventId = 21, Level = LogLevel.Error, Message = "Reading the proc connector failed: {Reason}. procmond goes on with the periodic /proc scan only.")]
    private static partial void LogReadFailed(ILogger logger, string reason);
}
