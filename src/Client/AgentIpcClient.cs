using System.Collections.Concurrent;
using System.Net.Sockets;
using DaemonEye.Networking;
using DaemonEye.Client.Internal;
using DaemonEye.Configuration;
using DaemonEye.Hosting;
using DaemonEye.Protocol;
using DaemonEye.Protocol.Ipc.V1;
using Google.Protobuf;
using Microsoft.Extensions.Configuration;

namespace DaemonEye.Client;

/// <summary>
/// The agent's IPC protocol (daemoneye.ipc.v1) over its IPC socket: the operator's control channel
/// (status, collector list and commands). Same framing as the bus; no handshake. Each
/// <see cref="SendAsync"/> gets the IpcResponse with its request id; requests may overlap.
/// </summary>
public sealed class AgentIpcClient : IAsyncDisposable
{
    private const int MaxFrameSize = Framing.MaxConfigurableFrameSize;
    private readonly ReactorSocket _socket;
    private readonly ConcurrentDictionary<uint, TaskCompletionSource<IpcResponse>> _pending = new();
    private readonly SemaphoreSlim _writeGate = new(1, 1);
    private readonly CancellationTokenSource _closing = new();
    private readonly Task _reader;
    private int _nextId;
    private BusConnectionException? _refusal;

    private AgentIpcClient(Socket socket, string socketPath)
    {
        _socket = new ReactorSocket(socket);
        SocketPath = socketPath;
        _reader = Task.Run(ReadLoopAsync, CancellationToken.None);
    }

    public string SocketPath { get; }

    /// <summary>The IPC socket as the agent resolves it: <c>ipc.socket_path</c>, else <c>ipc.sock</c>
    /// beside the bus socket (<c>broker.socket_path</c> or its default), from <paramref name="configPath"/>
    /// (default config/daemoneye.yaml, optional) and DAEMONEYE_* environment variables.</summary>
    public static string ResolveSocketPath(string? configPath)
    {
        var configuration = new ConfigurationBuilder().AddDaemonEyeConfiguration(configPath).Build();
        var ipc = new IpcOptions();
        configuration.GetSection(IpcOptions.SectionName).Bind(ipc);
        return SocketPaths.IpcSocket(ipc.SocketPath, configuration.GetBrokerOptions().SocketPath);
    }

    /// <exception cref="BusConnectionException">The socket is missing or refuses connections.</exception>
    public static async Task<AgentIpcClient> ConnectAsync(string socketPath, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(socketPath);
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new BusConnectionException(AgentSocketDiagnosis.Describe(socketPath, e, "agent IPC socket"), e);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        return new AgentIpcClient(socket, socketPath);
    }

    /// <summary>Sends <paramref name="request"/> (its request id is assigned here) and returns the agent's answer.</summary>
    /// <exception cref="BusConnectionException">The connection was lost before the answer.</exception>
    public async Task<IpcResponse> SendAsync(IpcRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        uint id;
        do
        {
            id = (uint)Interlocked.Increment(ref _nextId);
        }
        while (id == 0);

        request.RequestId = id;
        var reply = new TaskCompletionSource<IpcResponse>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[id] = reply;
        if (_reader.IsCompleted)
        {
            _pending.TryRemove(id, out _);
            throw Volatile.Read(ref _refusal) ?? new BusConnectionException($"the connection to the agent's IPC socket {SocketPath} was lost");
        }

        try
        {
            await _writeGate.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                await _socket.SendAsync(Framing.ToFrame(request), cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                _writeGate.Release();
            }

            return await reply.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException e)
        {
            // Writing fails when the agent refused the connection and closed it: say why, once the reader has it.
            await _reader.WaitAsync(TimeSpan.FromSeconds(2), CancellationToken.None).ContinueWith(static _ => { }, TaskScheduler.Default).ConfigureAwait(false);
            throw Volatile.Read(ref _refusal) ?? new BusConnectionException($"writing to the agent's IPC socket {SocketPath} failed: {e.Message}", e);
        }
        finally
        {
            _pending.TryRemove(id, out _);
        }
    }

    private async Task ReadLoopAsync()
    {
        var reader = new FrameReader(MaxFrameSize);
        Exception reason = new BusConnectionException($"the agent closed its IPC connection ({SocketPath})");
        try
        {
            while (true)
            {
                while (reader.TryTake(out var offset, out var length))
                {
                    var response = IpcResponse.Parser.ParseFrom(reader.Buffer.AsSpan(offset, length));
                    if (response.RequestId == 0 && response.Error is { } refused)
                    {
                        // Unsolicited: the agent refused the connection itself (e.g. this user may not use the socket).
                        reason = new BusConnectionException($"the agent refused this IPC connection ({refused.Kind}): {refused.Message}");
                        Volatile.Write(ref _refusal, (BusConnectionException)reason);
                        continue;
                    }

                    if (_pending.TryRemove(response.RequestId, out var waiting))
                    {
                        waiting.TrySetResult(response);
                    }
                }

                if (!await reader.FillAsync(_socket, _closing.Token).ConfigureAwait(false))
                {
                    break;
                }
            }
        }
        catch (OperationCanceledException)
        {
            reason = new ObjectDisposedException(nameof(AgentIpcClient));
        }
        catch (Exception e) when (e is SocketException or InvalidDataException or InvalidProtocolBufferException)
        {
            // An agent that refused the connection closes it with our request unread, so the read
            // after its refusal fails (ECONNRESET): the refusal is the reason, not the reset.
            reason = Volatile.Read(ref _refusal) ?? new BusConnectionException($"reading from the agent's IPC socket {SocketPath} failed: {e.Message}", e);
        }

        foreach (var (id, waiting) in _pending)
        {
            if (_pending.TryRemove(id, out _))
            {
                waiting.TrySetException(reason);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _closing.CancelAsync().ConfigureAwait(false);
        try
        {
            _socket.Socket.Shutdown(SocketShutdown.Both);
        }
        catch (SocketException)
        {
        }

        await _reader.ConfigureAwait(false);
        _socket.Dispose();
        _closing.Dispose();
        _writeGate.Dispose();
    }
}
