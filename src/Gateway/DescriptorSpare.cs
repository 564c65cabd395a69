using Microsoft.Win32.SafeHandles;

namespace DaemonEye.Gateway;

/// <summary>
/// Descriptors the agent holds open (on /dev/null) only to give them back to the .NET runtime when the
/// process runs out. At zero free descriptors the runtime aborts as soon as it needs one: every new
/// thread opens a pipe, every first use of an assembly opens its file. The accept loops keep
/// <see cref="UnixSocketServer.DescriptorReserve"/> free against their own accepts, but when something
/// else takes the last descriptor (or the limit is lowered at run time) accept fails with EMFILE and
/// nothing is left: the loop then releases the spare, so the agent keeps serving and refuses the
/// queued connections with a reason instead of aborting. Until the spare is taken again (it must fit
/// beside the reserve), accepted connections are refused: they would eat what the runtime was given.
/// One per process, shared by the bus and IPC listeners. Thread-safe.
/// </summary>
internal static class DescriptorSpare
{
    /// <summary>How many descriptors are held.</summary>
    public const int Size = 64;

    private static readonly Lock Gate = new();
    private static SafeFileHandle[]? _held;
    private static bool _released;

    /// <summary>True from a <see cref="Release"/> until the spare is taken again.</summary>
    public static bool Released => Volatile.Read(ref _released);

    /// <summary>
    /// Takes the spare unless it is held already, when the descriptors open now leave room for it and
    /// for the reserve under the soft RLIMIT_NOFILE (counted first, so a process near its limit is never
    /// brought to zero by this); false when it does not fit or cannot be opened.
    /// </summary>
    public static bool TryHold()
    {
        lock (Gate)
        {
            if (_held is not null)
            {
                return true;
            }

            var handles = new List<SafeFileHandle>(Size);
            try
            {
                // By count, not by the lowest free number: a released spare leaves holes low in the table.
                var soft = DaemonEye.Hosting.Posix.OpenFileLimit()?.Soft ?? ulong.MaxValue;
                if (soft != ulong.MaxValue && (ulong)(OpenDescriptors() + Size + UnixSocketServer.DescriptorReserve) >= soft)
                {
                    return false;
                }

                while (handles.Count < Size)
                {
                    handles.Add(Open());
                }

                Volatile.Write(ref _held, [.. handles]);
                Volatile.Write(ref _released, false);
                return true;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                handles.ForEach(h => h.Dispose());
                return false;
            }
        }
    }

    /// <summary>Closes the spare's descriptors, giving them to the rest of the process; how many it closed (0 when not held).</summary>
    public static int Release()
    {
        lock (Gate)
        {
            var held = _held;
            if (held is null)
            {
                return 0;
            }

            Volatile.Write(ref _held, null);
            Volatile.Write(ref _released, true);
            foreach (var handle in held)
            {
                handle.Dispose();
            }

            return held.Length;
        }
    }

    private static int OpenDescriptors() => Directory.EnumerateFileSystemEntries("/proc/self/fd").Count();

    private static SafeFileHandle Open() => File.OpenHandle("/dev/null", FileMode.Open, FileAccess.Read);
}
