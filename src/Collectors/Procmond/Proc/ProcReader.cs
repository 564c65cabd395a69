using System.Buffers.Text;
using System.IO.Enumeration;
using System.Text;

namespace DaemonEye.Collectors.Procmond.Proc;

/// <summary>How one read of a /proc file went.</summary>
internal enum ReadOutcome
{
    Ok,

    /// <summary>ENOENT/ESRCH: the process exited between listing and reading (a race, not an error).</summary>
    Gone,

    /// <summary>EACCES/EPERM: not ours to read (another user's process, without root).</summary>
    Denied,

    /// <summary>The file's content is not what the kernel documents.</summary>
    Malformed,
}

/// <summary>
/// Reads the per-process files of a /proc tree (the real <c>/proc</c>, or a fixture directory with
/// the same layout) through open/read/readlink/statx on reused buffers. Not thread-safe: one scan
/// at a time.
/// </summary>
internal sealed class ProcReader
{
    private readonly byte[] _root;
    private readonly byte[] _path = new byte[4096];

    public ProcReader(string root = "/proc")
    {
        Root = root.TrimEnd('/');
        _root = Encoding.UTF8.GetBytes(Root);
    }

    public string Root { get; }

    /// <summary>The numeric entries of the root: one per process (thread-group leader).</summary>
    public void ListPids(List<int> pids)
    {
        pids.Clear();
        var entries = new FileSystemEnumerable<int>(
            Root,
            (ref entry) => int.Parse(entry.FileName, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture),
            new EnumerationOptions { RecurseSubdirectories = false, IgnoreInaccessible = true, AttributesToSkip = 0 })
        {
            ShouldIncludePredicate = (ref entry) => entry.IsDirectory && IsNumber(entry.FileName),
        };
        pids.AddRange(entries);
    }

    private static bool IsNumber(ReadOnlySpan<char> name)
    {
        if (name.IsEmpty || name.Length > 10)
        {
            return false;
        }

        foreach (var c in name)
        {
            if (c is < '0' or > '9')
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>The NUL-terminated path <c>&lt;root&gt;/&lt;pid&gt;/&lt;leaf&gt;</c> in a reused buffer.</summary>
    public ReadOnlySpan<byte> PathOf(int pid, ReadOnlySpan<byte> leaf)
    {
        var span = _path.AsSpan();
        _root.CopyTo(span);
        var at = _root.Length;
        span[at++] = (byte)'/';
        Utf8Formatter.TryFormat(pid, span[at..], out var written);
        at += written;
        span[at++] = (byte)'/';
        leaf.CopyTo(span[at..]);
        at += leaf.Length;
        span[at] = 0;
        return span[..(at + 1)];
    }

    /// <summary>The path of a process's file as a string, e.g. for the hasher.</summary>
    public string PathString(int pid, string leaf) => $"{Root}/{pid}/{leaf}";

    public ReadOutcome ReadStat(int pid, byte[] buffer, out int length, out ProcStat stat)
    {
        stat = default;
        var outcome = Read(PathOf(pid, "stat"u8), buffer, out length);
        if (outcome != ReadOutcome.Ok)
        {
            return outcome;
        }

        return ProcParsers.TryParseStat(buffer.AsSpan(0, length), out stat) && length < buffer.Length ? ReadOutcome.Ok : ReadOutcome.Malformed;
    }

    public ReadOutcome ReadUid(int pid, byte[] buffer, out uint uid) => ReadUids(pid, buffer, out uid, out _);

    public ReadOutcome ReadUids(int pid, byte[] buffer, out uint uid, out uint euid)
    {
        uid = 0;
        euid = 0;
        var outcome = Read(PathOf(pid, "status"u8), buffer, out var length);
        if (outcome != ReadOutcome.Ok)
        {
            return outcome;
        }

        return ProcParsers.TryParseStatusUids(buffer.AsSpan(0, length), out uid, out euid) ? ReadOutcome.Ok : ReadOutcome.Malformed;
    }

    /// <summary>The command line, cut at <paramref name="buffer"/>'s length.</summary>
    public ReadOutcome ReadCommandLine(int pid, byte[] buffer, out string[] args)
    {
        args = [];
        var outcome = Read(PathOf(pid, "cmdline"u8), buffer, out var length);
        if (outcome == ReadOutcome.Ok)
        {
            args = ProcParsers.ParseCommandLine(buffer.AsSpan(0, length));
        }

        return outcome;
    }

    /// <summary>readlink of /proc/&lt;pid&gt;/exe into <paramref name="buffer"/> (raw, with the kernel's
    /// " (deleted)" suffix when the file is gone from disk).</summary>
    public ReadOutcome ReadExeLink(int pid, byte[] buffer, out int length)
    {
        var n = Native.ReadLink(PathOf(pid, "exe"u8), buffer);
        length = Math.Max(n, 0);
        return n >= 0 ? (n < buffer.Length ? ReadOutcome.Ok : ReadOutcome.Malformed) : Classify(-n);
    }

    private static readonly byte[][] FdLeaves = ["fd/0"u8.ToArray(), "fd/1"u8.ToArray(), "fd/2"u8.ToArray()];

    /// <summary>What standard descriptor <paramref name="fd"/> (0, 1 or 2) points at ("socket:[123]", "/dev/pts/0"...); empty when closed or unreadable.</summary>
    public string ReadStdioLink(int pid, int fd, byte[] buffer)
    {
        var n = Native.ReadLink(PathOf(pid, FdLeaves[fd]), buffer);
        return n > 0 && n < buffer.Length ? Encoding.UTF8.GetString(buffer, 0, n) : string.Empty;
    }

    /// <summary>The identity of the image the process runs (statx through /proc/&lt;pid&gt;/exe).</summary>
    public ReadOutcome StatExe(int pid, out FileKey key)
    {
        var rc = Native.Stat(PathOf(pid, "exe"u8), out key);
        return rc == 0 ? ReadOutcome.Ok : Classify(-rc);
    }

    public static ReadOutcome StatPath(string path, out FileKey key)
    {
        var bytes = new byte[Encoding.UTF8.GetByteCount(path) + 1];
        Encoding.UTF8.GetBytes(path, bytes);
        var rc = Native.Stat(bytes, out key);
        return rc == 0 ? ReadOutcome.Ok : Classify(-rc);
    }

    /// <summary>Boot time (seconds since the epoch) from &lt;root&gt;/stat.</summary>
    public long ReadBootTime()
    {
        var buffer = new byte[64 * 1024];
        var path = Encoding.UTF8.GetBytes(Root + "/stat\0");
        var n = Native.ReadFile(path, buffer);
        if (n < 0 || !ProcParsers.TryParseBootTime(buffer.AsSpan(0, n), out var boot))
        {
            throw new InvalidDataException($"cannot read btime from {Root}/stat (errno {-Math.Min(n, 0)})");
        }

        return boot;
    }

    private static ReadOutcome Read(ReadOnlySpan<byte> path, byte[] buffer, out int length)
    {
        var n = Native.ReadFile(path, buffer);
        length = Math.Max(n, 0);
        return n >= 0 ? ReadOutcome.Ok : Classify(-n);
    }

    private static ReadOutcome Classify(int errno) =>
        Native.IsGone(errno) ? ReadOutcome.Gone : Native.IsDenied(errno) ? ReadOutcome.Denied : ReadOutcome.Malformed;
}
