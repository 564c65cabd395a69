using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace DaemonEye.Gateway;

/// <summary>Who is on the other end of a Unix-domain socket, as the kernel says (SO_PEERCRED).</summary>
public readonly partial record struct PeerCredentials(int Pid, uint Uid, uint Gid)
{
    private const int SolSocket = 1;
    private const int SoPeerCred = 17;

    /// <summary>Reads the peer's pid, uid and gid; null when the kernel cannot say.</summary>
    public static PeerCredentials? Of(Socket socket)
    {
        Span<byte> buffer = stackalloc byte[12];
        var length = buffer.Length;
        if (getsockopt(socket.SafeHandle, SolSocket, SoPeerCred, ref MemoryMarshal.GetReference(buffer), ref length) != 0 || length < 12)
        {
            return null;
        }

        return new PeerCredentials(
            MemoryMarshal.Read<int>(buffer),
            MemoryMarshal.Read<uint>(buffer[4..]),
            MemoryMarshal.Read<uint>(buffer[8..]));
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int getsockopt(System.Runtime.InteropServices.SafeHandle socket, int level, int name, ref byte value, ref int length);
}
