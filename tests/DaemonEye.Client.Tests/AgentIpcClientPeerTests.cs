using System.Net.Sockets;
using DaemonEye.Protocol;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.V1;

namespace DaemonEye.Client.Tests;

/// <summary>
/// The IPC client against a raw peer that refuses it the way the agent does (an unsolicited
/// IpcResponse error, then close), with the client's request already in the peer's queue, unread.
/// Closing a Unix socket with unread data makes the client's next read fail with ECONNRESET right
/// after the refusal: the real agent does this only when the race goes that way.
/// </summary>
public sealed class AgentIpcClientPeerTests : IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);
    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("de-ipc-peer-");
    private readonly Socket _listener = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);

    public void Dispose()
    {
        _listener.Dispose();
        _directory.Delete(recursive: true);
    }

    [Fact]
    public async Task A_refusal_followed_by_a_reset_is_reported_as_the_refusal()
    {
        var path = Path.Combine(_directory.FullName, "ipc.sock");
        _listener.Bind(new UnixDomainSocketEndPoint(path));
        _listener.Listen(1);
        using var patience = new CancellationTokenSource(Patience);
        var accepting = _listener.AcceptAsync(patience.Token);
        await using var client = await AgentIpcClient.ConnectAsync(path, patience.Token);
        using var peer = await accepting;

        var call = client.SendAsync(new IpcRequest { Status = new StatusRequest() }, patience.Token);
        // Readable: the request is in the peer's queue.
        Assert.True(peer.Poll(Patience, SelectMode.SelectRead), "the request never arrived");
        Assert.False(call.IsCompleted, "the call completed before the peer refused it");

        var refusal = new IpcResponse { Error = new RpcError { Kind = RpcErrorKind.NotAuthorized, Message = "uid 65534 (pid 1) may not use this socket" } };
        await peer.SendAsync(Framing.ToFrame(refusal), SocketFlags.None, patience.Token);
        peer.Close(); // the request unread: the client's read after the refusal fails with ECONNRESET

        var failure = await Assert.ThrowsAsync<BusConnectionException>(() => call.WaitAsync(Patience));
        Assert.Equal("the agent refused this IPC connection (NotAuthorized): uid 65534 (pid 1) may not use this socket", failure.Message);
    }
}
