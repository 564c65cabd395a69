using System.Runtime.InteropServices;

namespace DaemonEye.Native;

/// <summary>
/// A system call failed. Carries the call's name and errno so a caller can tell
/// "not permitted" (EPERM, EACCES) from "not supported" (EINVAL, EPROTONOSUPPORT) and say so.
/// </summary>
public sealed class KernelException : Exception
{
    public KernelException(string call, int errno)
        : base($"{call} failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})")
    {
        Call = call;
        Errno = errno;
    }

    public KernelException() : this("unknown", 0) { }

    public KernelException(string message) : base(message) => Call = "unknown";

    public KernelException(string message, Exception innerException) : base(message, innerException) => Call = "unknown";

    public string Call { get; } = "unknown";

    public int Errno { get; }

    /// <summary>The caller lacks a privilege or a capability (EPERM, EACCES).</summary>
    public bool IsPermissionDenied => Errno is 1 or 13;

    /// <summary>Throws for the last P/Invoke error of <paramref name="call"/>.</summary>
    public static KernelException FromLastError(string call) => new(call, Marshal.GetLastPInvokeError());
}
