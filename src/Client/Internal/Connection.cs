using System.Collections.Concurrent;
using System.Net.Sockets;
using DaemonEye.Networking;
using DaemonEye.Protocol.V1;

namespace DaemonEye.Client.Internal;

/// <summary>One accepted connection to the agent: its socket, reader buffer and the agent's ids for
/// this connection's subscriptions. A <see cref="BusClient"/> outlives many of these.</summary>
internal sealed class Connection(ReactorSocket io, FrameReader reader, Welcome welcome) : IDisposable
{
    private readonly TaskCompletionSource<Exception?> _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _cts = new();

    /// <summary>The socket's reads and writes.</summary>
    public ReactorSocket Io { get; } = io;

    public Socket Socket => Io.Socket;

    public FrameReader Reader { get; } = reader;

    public Welcome Welcome { get; } = welcome;

    /// <summary>Subscriptions by the agent's id, valid on this connection only.</summary>
    public ConcurrentDictionary<uint, BusSubscription> Subscriptions { get; } = new();

    public CancellationToken Token => _cts.Token;

    /// <summary>Completes with the reason once the connection has failed or been closed.</summary>
    public Task<Exception?> Closed => _closed.Task;

    public Task ReaderTask { get; set; } = Task.CompletedTask;

    public Task WriterTask { get; set; } = Task.CompletedTask;

    /// <summary>
    /// Set by the reader when the agent hung up while a delivery waited on a full subscription: from
    /// then on nothing waits, and a buffered subscription that is full abandons the rest of this
    /// connection's deliveries (<see cref="Abandoning"/>), each counted.
    /// </summary>
    public bool Ending { get; set; }

    /// <summary>The subscriptions that abandon every further delivery on this connection, so what they get keeps its order (the reader's own).</summary>
    public HashSet<BusSubscription> Abandoning { get; } = [];

    /// <summary>Deliveries this connection's reader abandoned (the reader writes it; read once the reader has stopped).</summary>
    public long Abandoned { get; set; }

    /// <summary>A fatal Error the agent sent just before closing, if any.</summary>
    public BusException? FatalError { get; set; }

    /// <summary>Ends the connection (idempotent); the first reason wins.</summary>
    public void Close(Exception? reason)
    {
        if (_closed.TrySetResult(FatalError ?? reason))
        {
            try
            {
                _cts.Cancel();
            }
            catch (ObjectDisposedException)
            {
            }

            try
            {
                Socket.Shutdown(SocketShutdown.Both);
            }
            catch (SocketException)
            {
            }
            catch (ObjectDisposedException)
            {
            }
        }
    }

    public void Dispose()
    {
        Close(null);
        Io.Dispose();
        _cts.Dispose();
    }
}
