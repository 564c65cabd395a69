using System.Buffers;
using System.Net.Sockets;
using DaemonEye.Protocol;
using DaemonEye.Protocol.Ipc.V1;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>Raw IPC requests to the agent, framed by hand: tests the wire, not the CLI.</summary>
internal static class IpcProbe
{
    private static uint _nextId;

    public static async Task<IpcResponse> SendAsync(string socketPath, IpcRequest request, CancellationToken cancellationToken = default)
    {
        request.RequestId = Interlocked.Increment(ref _nextId);
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancellationToken);
        await socket.SendAsync(Framing.ToFrame(request), cancellationToken);
        var buffer = new byte[1 << 20];
        var filled = 0;
        while (true)
        {
            var read = await socket.ReceiveAsync(buffer.AsMemory(filled), cancellationToken);
            if (read == 0)
            {
                throw new IOException("the agent closed the IPC connection without answering");
            }

            filled += read;
            var sequence = new ReadOnlySequence<byte>(buffer, 0, filled);
            if (Framing.TryReadFrame(ref sequence, buffer.Length, out var frame, out _) == FrameStatus.Complete)
            {
                var response = IpcResponse.Parser.ParseFrom(frame);
                Assert.Equal(request.RequestId, response.RequestId);
                return response;
            }
        }
    }

    public static async Task<CollectorStatus> CollectorAsync(string socketPath, string id)
    {
        var response = await SendAsync(socketPath, new IpcRequest { ListCollectors = new ListCollectorsRequest() });
        return Assert.Single(response.ListCollectors.Collectors, c => c.Id == id);
    }

    public static Task<IpcResponse> CommandAsync(string socketPath, string id, CollectorAction action, bool graceful = true) =>
        SendAsync(socketPath, new IpcRequest { CollectorCommand = new CollectorCommand { Id = id, Action = action, Graceful = graceful } });
}
