using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace DaemonEye.Protocol;

/// <summary>
/// A send that never waits: <c>send(2)</c> with <c>MSG_DONTWAIT</c> on a socket whose reads and
/// writes are otherwise asynchronous. The socket's own mode is left alone (a NetworkStream refuses
/// a socket switched to non-blocking), so this may run beside the socket's asynchronous operations,
/// as long as the caller keeps its bytes from interleaving with theirs.
/// </summary>
public static partial class SocketSend
{
    private const int MsgDontWait = 0x40;
    private const int MsgNoSignal = 0x4000;
    private const int EIntr = 4;
    private const int EAgain = 11; // EWOULDBLOCK is the same number on Linux

    /// <summary>
    /// Sends what the kernel takes now. Returns the bytes sent: all of <paramref name="data"/>, a
    /// prefix of it, or 0 when the socket buffer is full; -1 when the socket failed or is closed (the
    /// caller's asynchronous path then meets and reports the same failure).
    /// </summary>
    public static int TrySendNow(Socket socket, ReadOnlySpan<byte> data)
    {
        try
        {
            while (true)
            {
                var sent = send(socket.SafeHandle, data, (nuint)data.Length, MsgDontWait | MsgNoSignal);
                if (sent >= 0)
                {
                    return (int)sent;
                }

                var errno = Marshal.GetLastPInvokeError();
                if (errno != EIntr)
                {
                    return errno == EAgain ? 0 : -1;
                }
            }
        }
        catch (ObjectDisposedException)
        {
            return -1;
        }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint send(SafeHandle socket, ReadOnlySpan<byte> buffer, nuint length, int flags);
}
