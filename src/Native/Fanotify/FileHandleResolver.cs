using System.Runtime.InteropServices;
using System.Text;

namespace DaemonEye.Native.Fanotify;

/// <summary>
/// Turns the directory file handles fanotify reports into paths: open_by_handle_at on a descriptor
/// of the same filesystem (registered with <see cref="Register"/>, found by the event's fsid), then
/// readlink of /proc/self/fd/N. Needs CAP_DAC_READ_SEARCH. Paths are cached by handle (at most
/// <c>capacity</c> directories; when full the cache is emptied, counted in <see cref="CacheResets"/>);
/// the owner calls <see cref="Forget"/> when a directory is renamed or removed, since a cached path
/// would then be stale.
/// </summary>
public sealed partial class FileHandleResolver(int capacity = 16384) : IDisposable
{
    private const int OPath = 0x200000;
    private const int OCloexec = 0x80000;
    private const string DeletedSuffix = " (deleted)";
    private readonly Dictionary<ulong, KernelFile> _mounts = [];
    private readonly Dictionary<ulong, (byte[] Handle, string Path)> _cache = [];

    /// <summary>Directories resolved through the kernel (cache misses).</summary>
    public long Lookups { get; private set; }

    /// <summary>Handles answered from the cache.</summary>
    public long CacheHits { get; private set; }

    /// <summary>Times the cache was full and emptied.</summary>
    public long CacheResets { get; private set; }

    /// <summary>Keeps a descriptor of the filesystem <paramref name="path"/> is on, for handles from it. Returns its fsid.</summary>
    public unsafe ulong Register(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var buffer = stackalloc byte[128];
        if (StatFs(path, buffer) != 0)
        {
            throw KernelException.FromLastError($"statfs({path})");
        }

        var fsid = *(ulong*)(buffer + 56); // struct statfs: f_fsid after seven 8-byte words
        if (_mounts.ContainsKey(fsid))
        {
            return fsid;
        }

        // Read-only, not O_PATH: open_by_handle_at does not accept an O_PATH descriptor as mount_fd (EBADF).
        var fd = Open(path, OCloexec);
        if (fd < 0)
        {
            throw KernelException.FromLastError($"open({path})");
        }

        _mounts[fsid] = new KernelFile(fd);
        return fsid;
    }

    /// <summary>Empties the cache (a directory was renamed or removed).</summary>
    public void Forget() => _cache.Clear();

    /// <summary>
    /// The path of the directory <paramref name="fileHandle"/> (a struct file_handle as the event holds
    /// it: handle_bytes, handle_type, f_handle) names on the filesystem <paramref name="fsid"/>, or null
    /// with the reason in <paramref name="problem"/>.
    /// </summary>
    public unsafe string? Resolve(ulong fsid, ReadOnlySpan<byte> fileHandle, out string? problem)
    {
        var key = Key(fsid, fileHandle);
        if (_cache.TryGetValue(key, out var hit) && fileHandle.SequenceEqual(hit.Handle))
        {
            CacheHits++;
            problem = null;
            return hit.Path;
        }

        if (!_mounts.TryGetValue(fsid, out var mount))
        {
            problem = $"event from a filesystem not registered (fsid {fsid:x})";
            return null;
        }

        Lookups++;
        int fd;
        fixed (byte* handle = fileHandle)
        {
            fd = OpenByHandleAt(mount.Fd, handle, OPath | OCloexec);
        }

        if (fd < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            problem = errno == 116 ? "directory no longer exists (ESTALE)" : new KernelException("open_by_handle_at", errno).Message;
            return null;
        }

        string? path;
        using (var file = new KernelFile(fd))
        {
            path = ReadLink($"/proc/self/fd/{fd}");
        }

        if (path is null)
        {
            problem = KernelException.FromLastError("readlink").Message;
            return null;
        }

        if (path.EndsWith(DeletedSuffix, StringComparison.Ordinal))
        {
            problem = "directory was removed";
            return path[..^DeletedSuffix.Length];
        }

        if (_cache.Count >= capacity)
        {
            _cache.Clear();
            CacheResets++;
        }

        _cache[key] = (fileHandle.ToArray(), path);
        problem = null;
        return path;
    }

    /// <summary>The target of a symbolic link, or null (errno in the last P/Invoke error).</summary>
    public static unsafe string? ReadLink(string path)
    {
        var buffer = stackalloc byte[4096];
        var n = ReadLinkNative(path, buffer, 4096);
        return n < 0 ? null : Encoding.UTF8.GetString(buffer, (int)n);
    }

    private static ulong Key(ulong fsid, ReadOnlySpan<byte> handle)
    {
        // FNV-1a over the fsid and the handle.
        var hash = 14695981039346656037UL ^ fsid;
        foreach (var b in handle)
        {
            hash = (hash ^ b) * 1099511628211UL;
        }

        return hash;
    }

    public void Dispose()
    {
        foreach (var mount in _mounts.Values)
        {
            mount.Dispose();
        }

        _mounts.Clear();
        _cache.Clear();
    }

    [LibraryImport("libc", EntryPoint = "statfs", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int StatFs(string path, byte* buffer);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "open_by_handle_at", SetLastError = true)]
    private static unsafe partial int OpenByHandleAt(int mountFd, byte* handle, int flags);

    [LibraryImport("libc", EntryPoint = "readlink", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial nint ReadLinkNative(string path, byte* buffer, nuint size);
}
