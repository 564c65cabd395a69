using System.Globalization;
using System.IO.Enumeration;
using System.Runtime.InteropServices;
using System.Text;

namespace DaemonEye.Native.SockDiag;

/// <summary>
/// Socket inode → pid, from the <c>socket:[inode]</c> links of <c>/proc/&lt;pid&gt;/fd</c>: the
/// only place the kernel says which process holds a socket. Cached: a known inode costs a
/// dictionary look-up. Refreshed incrementally: <see cref="Resolve"/> reads the fd directories of
/// the processes that held sockets before first, then the others newest pid first, and stops as
/// soon as every inode asked for is found; every socket link it reads on the way is cached. A
/// socket shared by several processes (inherited over fork, passed over a Unix socket) maps to the
/// first one read. Processes whose fd directory is not readable (not root) are counted in
/// <see cref="Denied"/>. One thread at a time.
/// </summary>
public sealed partial class SocketInodeMap(string procRoot = "/proc")
{
    private readonly Dictionary<ulong, int> _owners = [];
    private readonly Dictionary<int, HashSet<ulong>> _byPid = [];
    private readonly byte[] _link = new byte[64];
    private readonly List<int> _order = [];
    private long _scans;
    private long _pidsRead;
    private long _linksRead;
    private long _denied;
    private long _vanished;

    public int Count => _owners.Count;

    /// <summary>Refreshes that read /proc.</summary>
    public long Scans => _scans;

    /// <summary>fd directories read.</summary>
    public long PidsRead => _pidsRead;

    /// <summary>fd links read.</summary>
    public long LinksRead => _linksRead;

    /// <summary>fd directories the caller may not read (EACCES).</summary>
    public long Denied => _denied;

    /// <summary>Processes that ended between listing and reading.</summary>
    public long Vanished => _vanished;

    public bool TryGetPid(ulong inode, out int pid) => _owners.TryGetValue(inode, out pid);

    /// <summary>Forgets inodes for which <paramref name="keep"/> is false (sockets gone).</summary>
    public void Retain(Func<ulong, bool> keep)
    {
        ArgumentNullException.ThrowIfNull(keep);
        List<ulong>? drop = null;
        foreach (var inode in _owners.Keys)
        {
            if (!keep(inode))
            {
                (drop ??= []).Add(inode);
            }
        }

        drop?.ForEach(Forget);
    }

    public void Forget(ulong inode)
    {
        if (_owners.Remove(inode, out var pid) && _byPid.TryGetValue(pid, out var set))
        {
            set.Remove(inode);
            if (set.Count == 0)
            {
                _byPid.Remove(pid);
            }
        }
    }

    /// <summary>Finds the owners of <paramref name="missing"/> (inodes not yet in the map) by reading
    /// /proc until all are found or every process was read. Returns how many were found.</summary>
    public int Resolve(IReadOnlyCollection<ulong> missing)
    {
        ArgumentNullException.ThrowIfNull(missing);
        var wanted = new HashSet<ulong>(missing.Where(i => i != 0 && !_owners.ContainsKey(i)));
        if (wanted.Count == 0)
        {
            return 0;
        }

        var total = wanted.Count;
        _scans++;
        _order.Clear();
        _order.AddRange(_byPid.Keys.OrderDescending());
        var known = _order.Count;
        foreach (var pid in ListPids().OrderDescending())
        {
            if (!_byPid.ContainsKey(pid))
            {
                _order.Add(pid);
            }
        }

        for (var i = 0; i < _order.Count && wanted.Count > 0; i++)
        {
            ReadFds(_order[i], wanted, stillKnown: i < known);
        }

        return total - wanted.Count;
    }

    private IEnumerable<int> ListPids()
    {
        var options = new EnumerationOptions { IgnoreInaccessible = true, RecurseSubdirectories = false, AttributesToSkip = 0 };
        return new FileSystemEnumerable<int>(procRoot, static (ref FileSystemEntry e) => int.Parse(e.FileName, NumberStyles.None, CultureInfo.InvariantCulture), options)
        {
            ShouldIncludePredicate = static (ref FileSystemEntry e) => e.IsDirectory && IsNumber(e.FileName),
        };
    }

    private void ReadFds(int pid, HashSet<ulong> wanted, bool stillKnown)
    {
        var directory = string.Create(CultureInfo.InvariantCulture, $"{procRoot}/{pid}/fd");
        List<int> fds;
        try
        {
            fds = [.. new FileSystemEnumerable<int>(directory, static (ref FileSystemEntry e) => int.Parse(e.FileName, NumberStyles.None, CultureInfo.InvariantCulture), new EnumerationOptions { AttributesToSkip = 0 })
            {
                ShouldIncludePredicate = static (ref FileSystemEntry e) => IsNumber(e.FileName),
            }];
        }
        catch (UnauthorizedAccessException)
        {
            _denied++;
            return;
        }
        catch (Exception e) when (e is DirectoryNotFoundException or IOException)
        {
            _vanished++;
            if (stillKnown && _byPid.Remove(pid, out var gone))
            {
                foreach (var inode in gone)
                {
                    _owners.Remove(inode);
                }
            }

            return;
        }

        _pidsRead++;
        Span<byte> path = stackalloc byte[256];
        foreach (var fd in fds)
        {
            var written = Encoding.ASCII.GetBytes(string.Create(CultureInfo.InvariantCulture, $"{directory}/{fd}"), path);
            path[written] = 0;
            var n = ReadLink(path, _link, _link.Length);
            _linksRead++;
            if (n <= 0 || !TryParseSocketLink(_link.AsSpan(0, (int)n), out var inode))
            {
                continue;
            }

            if (_owners.TryAdd(inode, pid))
            {
                if (!_byPid.TryGetValue(pid, out var set))
                {
                    _byPid[pid] = set = [];
                }

                set.Add(inode);
            }

            wanted.Remove(inode);
        }
    }

    /// <summary>Parses <c>socket:[12345]</c>.</summary>
    public static bool TryParseSocketLink(ReadOnlySpan<byte> link, out ulong inode)
    {
        inode = 0;
        return link.StartsWith("socket:["u8) && link.EndsWith("]"u8)
            && ulong.TryParse(Encoding.ASCII.GetString(link[8..^1]), NumberStyles.None, CultureInfo.InvariantCulture, out inode);
    }

    private static bool IsNumber(ReadOnlySpan<char> name)
    {
        if (name.IsEmpty)
        {
            return false;
        }

        foreach (var c in name)
        {
            if (!char.IsAsciiDigit(c))
            {
                return false;
            }
        }

        return true;
    }

    [LibraryImport("libc", EntryPoint = "readlink", SetLastError = true)]
    private static partial nint ReadLink(ReadOnlySpan<byte> path, Span<byte> buffer, nint size);
}
