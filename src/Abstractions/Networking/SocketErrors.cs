using System.Net.Sockets;

namespace DaemonEye.Networking;

/// <summary>Linux errno values of socket calls as the runtime's <see cref="SocketError"/>s.</summary>
internal static class SocketErrors
{
    public static SocketException FromErrno(int errno) => new((int)(errno switch
    {
        9 => SocketError.OperationAborted,         // EBADF: closed under the call
        22 => SocketError.InvalidArgument,         // EINVAL
        32 => SocketError.Shutdown,                // EPIPE: the peer closed, or this end shut down writing
        88 => SocketError.NotSocket,               // ENOTSOCK
        90 => SocketError.MessageSize,             // EMSGSIZE
        103 => SocketError.ConnectionAborted,      // ECONNABORTED
        104 => SocketError.ConnectionReset,        // ECONNRESET
        105 => SocketError.NoBufferSpaceAvailable, // ENOBUFS
        107 => SocketError.NotConnected,           // ENOTCONN
        110 => SocketError.TimedOut,               // ETIMEDOUT
        _ => SocketError.SocketError,
    }));
}
