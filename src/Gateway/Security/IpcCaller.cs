namespace DaemonEye.Gateway.Security;

/// <summary>
/// One IPC connection's caller: its kernel credentials and the role they give it, decided once on
/// accept (a connection's SO_PEERCRED does not change). See <see cref="AccessControl.AuthorizeIpc"/>.
/// </summary>
internal sealed class IpcCaller(long connectionId, PeerCredentials? peer, IpcRole role)
{
    private int _denied;

    public long ConnectionId { get; } = connectionId;

    public PeerCredentials? Peer { get; } = peer;

    public IpcRole Role { get; } = role;

    /// <summary>True the first time a request of this connection is refused (for log levels).</summary>
    public bool FirstDenial() => Interlocked.Exchange(ref _denied, 1) == 0;
}
