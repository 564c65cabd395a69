using System.Buffers;
using System.Net.Sockets;
using DaemonEye.Client.Internal;
using DaemonEye.Networking;
using DaemonEye.Protocol;
using DaemonEye.Protocol.V1;
using Google.Protobuf;

namespace DaemonEye.Client;

/// <summary>The connection's life: connect and handshake, start its reader and writer, restore
/// subscriptions after a reconnect, notice a loss, back off and reconnect.</summary>
public sealed partial class BusClient
{
    private async Task<Connection> OpenAsync(CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.HandshakeTimeout);
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        IDisposable owner = socket;
        try
        {
            try
            {
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(SocketPath), timeout.Token).ConfigureAwait(false);
            }
            catch (SocketException e)
            {
                throw new BusConnectionException(DescribeConnectFailure(SocketPath, e), e);
            }

            // From here on every read and write goes through the reactor (see SocketReactor).
            var io = new ReactorSocket(socket);
            owner = io;

            var hello = new Envelope
            {
                RequestId = 1,
                Hello = new Hello
                {
                    ProtocolVersion = ProtocolConstants.Version,
                    ClientId = _options.ClientId,
                    Role = _options.Role,
                    ClientVersion = _options.ClientVersion,
                    Capabilities = { _options.Capabilities },
                    RegistrationToken = _options.RegistrationToken ?? string.Empty,
                },
            };
            SocketException? sendFailed = null;
            try
            {
                await io.SendAsync(Framing.ToFrame(hello), timeout.Token).ConfigureAwait(false);
            }
            catch (SocketException e)
            {
                // The agent may have refused the connection on accept (e.g. this user may not use the
                // bus) and closed it: its Error is still there to read, and says why.
                sendFailed = e;
            }

            var reader = new FrameReader(MaxIncomingFrameSize);
            Envelope reply;
            while (true)
            {
                if (reader.TryTake(out var offset, out var length))
                {
                    reply = Envelope.Parser.ParseFrom(reader.Buffer.AsSpan(offset, length));
                    break;
                }

                if (!await reader.FillAsync(io, timeout.Token).ConfigureAwait(false))
                {
                    throw sendFailed is not null
                        ? new BusConnectionException($"the handshake with the agent at {SocketPath} failed: {sendFailed.Message}", sendFailed)
                        : new BusConnectionException($"the agent at {SocketPath} closed the connection during the handshake");
                }
            }

            switch (reply.BodyCase)
            {
                case Envelope.BodyOneofCase.Welcome:
                    return new Connection(io, reader, reply.Welcome);
                case Envelope.BodyOneofCase.Error:
                    throw new BusException(reply.Error.Code, $"the agent refused the handshake: {reply.Error.Code}: {reply.Error.Message}", reply.Error.Fatal);
                default:
                    throw new BusException(ErrorCode.UnexpectedMessage, $"the agent answered Hello with {reply.BodyCase} instead of Welcome", fatal: true);
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            owner.Dispose();
            throw new BusConnectionException($"the agent at {SocketPath} did not complete the handshake within {_options.HandshakeTimeout.TotalSeconds:0.#} s");
        }
        catch (Exception e) when (e is IOException or InvalidDataException or InvalidProtocolBufferException or SocketException)
        {
            owner.Dispose();
            throw new BusConnectionException($"the handshake with the agent at {SocketPath} failed: {e.Message}", e);
        }
        catch
        {
            owner.Dispose();
            throw;
        }
    }

    internal static string DescribeConnectFailure(string path, SocketException e) => AgentSocketDiagnosis.Describe(path, e);

    /// <summary>Starts the reader, restores subscriptions (after a reconnect), then starts the writer and publishes the connection.</summary>
    private async Task<int> ActivateAsync(Connection connection, bool restore, CancellationToken cancellationToken)
    {
        lock (_writer.Gate)
        {
            _maxFrameSize = connection.Welcome.MaxFrameSize > 0 ? (int)Math.Min(connection.Welcome.MaxFrameSize, (uint)Framing.MaxConfigurableFrameSize) : Framing.DefaultMaxFrameSize;
        }

        connection.ReaderTask = Task.Run(() => ReadLoopAsync(connection), CancellationToken.None);
        var restored = 0;
        if (restore)
        {
            restored = await RestoreSubscriptionsAsync(connection, cancellationToken).ConfigureAwait(false);
        }

        connection.WriterTask = Task.Run(() => WriteLoopAsync(connection), CancellationToken.None);
        lock (_stateGate)
        {
            Volatile.Write(ref _connection, connection);
            _connected.TrySetResult(connection);
        }

        Log.Connected(_logger, SocketPath, connection.Welcome.ConnectionId);
        return restored;
    }

    private async Task<int> RestoreSubscriptionsAsync(Connection connection, CancellationToken cancellationToken)
    {
        var subscriptions = _subscriptions.Snapshot();
        if (subscriptions.Count == 0)
        {
            return 0;
        }

        // The writer is not running yet: send the Subscribe frames directly, ahead of anything buffered.
        var batch = new ArrayBufferWriter<byte>();
        var waits = new List<(BusSubscription Subscription, PendingRequest Pending)>(subscriptions.Count);
        foreach (var subscription in subscriptions)
        {
            // The old connection's reader has ended, and the new one delivers nothing to this subscription before its ack.
            if (subscription.Durable is not null && subscription.DiscardBuffered() is > 0 and var discarded)
            {
                Interlocked.Add(ref _abandonedTotal, discarded);
                Log.BufferedDurableDiscarded(_logger, subscription.Pattern, subscription.Durable.Consumer, discarded);
            }

            var (id, pending) = _requests.Register(connection, subscription);
            Framing.Write(batch, new Envelope { RequestId = id, Subscribe = subscription.ToSubscribe() });
            waits.Add((subscription, pending));
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, connection.Token);
        timeout.CancelAfter(_options.HandshakeTimeout);
        await connection.Io.SendAsync(batch.WrittenMemory, timeout.Token).ConfigureAwait(false);
        var restored = 0;
        foreach (var (subscription, pending) in waits)
        {
            try
            {
                await pending.Reply.WaitAsync(timeout.Token).ConfigureAwait(false);
                restored++;
            }
            catch (BusException e) when (e is not BusConnectionException)
            {
                // The agent refused this one (e.g. LIMIT_EXCEEDED): end it so its reader learns why.
                Log.RestoreRefused(_logger, subscription.Pattern, e.Code, e.Message);
                _subscriptions.Remove(subscription);

                subscription.TryClose(e);
            }
        }

        return restored;
    }

    private async Task SuperviseAsync(Connection connection)
    {
        while (true)
        {
            var reason = await connection.Closed.ConfigureAwait(false);
            var lost = await StopAsync(connection).ConfigureAwait(false);
            if (_disposeCts.IsCancellationRequested)
            {
                return;
            }

            Log.Disconnected(_logger, SocketPath, reason);
            Raise(Disconnected, new BusDisconnectedEventArgs(reason, lost, connection.Abandoned));
            if (!_options.AutoReconnect)
            {
                FailEverything(new BusConnectionException($"the connection to the agent at {SocketPath} was lost: {reason?.Message ?? "closed"}", reason));
                return;
            }

            var next = await ReconnectAsync().ConfigureAwait(false);
            if (next is null)
            {
                return;
            }

            connection = next;
        }
    }

    /// <summary>Stops the connection's loops and fails its requests; returns the frames lost in flight.</summary>
    private async Task<long> StopAsync(Connection connection)
    {
        connection.Close(null);
        lock (_stateGate)
        {
            if (_connection == connection)
            {
                Volatile.Write(ref _connection, null);
                if (_connected.Task.IsCompleted)
                {
                    _connected = new TaskCompletionSource<Connection>(TaskCreationOptions.RunContinuationsAsynchronously);
                }
            }
        }

        try
        {
            await Task.WhenAll(connection.ReaderTask, connection.WriterTask).ConfigureAwait(false);
        }
        catch
        {
            // The loops report through connection.Closed.
        }

        FailCalls(connection, $"the connection to the agent at {SocketPath} was lost while the call was pending");
        _requests.Fail(connection, new BusConnectionException($"the connection to the agent at {SocketPath} was lost"));
        long lost = _writer.DropInFlight();
        Interlocked.Add(ref _lostFrames, lost);
        if (connection.Abandoned > 0)
        {
            Log.DeliveriesAbandoned(_logger, SocketPath, connection.Abandoned);
        }

        connection.Dispose();
        return lost;
    }

    private async Task<Connection?> ReconnectAsync()
    {
        var token = _disposeCts.Token;
        for (var attempt = 1; ; attempt++)
        {
            var delay = BackoffDelay(attempt, _options.ReconnectMinDelay, _options.ReconnectMaxDelay, Random.Shared.NextDouble());
            try
            {
                await Task.Delay(delay, _time, token).ConfigureAwait(false);
                var connection = await OpenAsync(token).ConfigureAwait(false);
                try
                {
                    var restored = await ActivateAsync(connection, restore: true, token).ConfigureAwait(false);
                    Log.Reconnected(_logger, SocketPath, connection.Welcome.ConnectionId, attempt, restored);
                    Raise(Reconnected, new BusReconnectedEventArgs(connection.Welcome.ConnectionId, attempt, restored));
                    return connection;
                }
                catch (Exception e) when (e is not OperationCanceledException || !token.IsCancellationRequested)
                {
                    connection.Close(e);
                    await StopAsync(connection).ConfigureAwait(false);
                    throw;
                }
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
                return null;
            }
            catch (Exception e)
            {
                Log.ReconnectFailed(_logger, SocketPath, attempt, e.Message);
            }
        }
    }

    /// <summary>Exponential backoff with equal jitter: half the capped delay, plus up to half again at random.</summary>
    internal static TimeSpan BackoffDelay(int attempt, TimeSpan min, TimeSpan max, double random)
    {
        var exponent = Math.Min(attempt - 1, 30);
        var capped = Math.Min(max.Ticks, min.Ticks * (double)(1L << exponent));
        return TimeSpan.FromTicks((long)((capped / 2) + (capped / 2 * random)));
    }

    private void FailEverything(Exception error)
    {
        Volatile.Write(ref _fault, error);
        _writer.ReleaseWaiters();
        foreach (var subscription in _subscriptions.TakeAll())
        {
            subscription.TryClose(error);
        }

        lock (_stateGate)
        {
            _connected.TrySetException(error);
            _connected.Task.Exception?.Handle(_ => true);
        }
    }

    private Task<Connection> WaitConnectedAsync(CancellationToken cancellationToken)
    {
        lock (_stateGate)
        {
            return _connected.Task.WaitAsync(cancellationToken);
        }
    }

    /// <summary>The connection's writer: the <see cref="CommandWriter"/>'s loop on this connection's socket.</summary>
    private async Task WriteLoopAsync(Connection connection)
    {
        var token = connection.Token;
        try
        {
            await _writer.RunAsync(connection.Io, token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            connection.Close(new BusConnectionException($"writing to the agent at {SocketPath} failed: {e.Message}", e));
        }
    }
}
