using System.Globalization;
using DaemonEye.Native.SockDiag;
using DaemonEye.Protocol.Network.V1;

namespace DaemonEye.Collectors.Netmond;

/// <summary>
/// Names the process behind a socket: the inode → pid map (DaemonEye.Native), then the process's
/// name (/proc/&lt;pid&gt;/comm), executable (exe link), cgroup (/proc/&lt;pid&gt;/cgroup) and the
/// socket's uid as a user name. Process details are cached for one scan (a burst of sockets of one
/// process reads them once). What cannot be named is said in <c>unattributed_reason</c>, never guessed.
/// </summary>
internal sealed class SocketOwners(string procRoot = "/proc")
{
    public const string NoProcess = "no process holds it (a kernel socket, or its owner closed it or ended before netmond read /proc)";
    public const string NeverSeenAlive = "closed before netmond saw it alive (shorter than one scan interval): the kernel names no process for a freed socket";

    private readonly Dictionary<int, (string Name, string Executable, string Cgroup)> _processes = [];
    private readonly UserNames _users = new();

    public SocketInodeMap Map { get; } = new(procRoot);

    /// <summary>Starts a scan: process details are read afresh.</summary>
    public void BeginScan()
    {
        _processes.Clear();
        _users.Refresh();
    }

    /// <summary>Finds the owners of these new sockets' inodes in one pass over /proc.</summary>
    public void Resolve(IReadOnlyCollection<ulong> inodes) => Map.Resolve(inodes);

    public SocketOwner Describe(in InetSocket socket)
    {
        var owner = new SocketOwner { Uid = socket.Uid, UidKnown = true, User = _users.NameOf(socket.Uid), CgroupId = socket.CgroupId };
        if (socket.Inode == 0 || !Map.TryGetPid(socket.Inode, out var pid))
        {
            owner.UnattributedReason = NoProcess;
            return owner;
        }

        if (!_processes.TryGetValue(pid, out var p))
        {
            p = (ReadText(pid, "comm"), ReadLink(pid, "exe"), ReadCgroup(pid));
            _processes[pid] = p;
        }

        owner.Attributed = true;
        owner.Pid = (uint)pid;
        owner.Name = p.Name;
        owner.Executable = p.Executable;
        owner.Cgroup = p.Cgroup;
        return owner;
    }

    /// <summary>The owner of a socket seen only in its destroy notification.</summary>
    public static SocketOwner Unseen() => new() { UnattributedReason = NeverSeenAlive };

    private string Path(int pid, string name) => string.Create(CultureInfo.InvariantCulture, $"{procRoot}/{pid}/{name}");

    private string ReadText(int pid, string name)
    {
        try
        {
            return File.ReadAllText(Path(pid, name)).TrimEnd('\n');
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return string.Empty;
        }
    }

    private string ReadLink(int pid, string name)
    {
        try
        {
            return new FileInfo(Path(pid, name)).LinkTarget ?? string.Empty;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return string.Empty;
        }
    }

    /// <summary>The cgroup v2 path ("0::/system.slice/x.service"), else the first hierarchy's.</summary>
    private string ReadCgroup(int pid)
    {
        var text = ReadText(pid, "cgroup");
        foreach (var line in text.Split('\n'))
        {
            if (line.StartsWith("0::", StringComparison.Ordinal))
            {
                return line[3..];
            }
        }

        var first = text.Split('\n')[0];
        var colon = first.IndexOf(':', first.IndexOf(':', StringComparison.Ordinal) + 1);
        return colon < 0 ? string.Empty : first[(colon + 1)..];
    }
}

/// <summary>uid → user name from /etc/passwd, re-read when the file changes.</summary>
internal sealed class UserNames(string path = "/etc/passwd")
{
    private Dictionary<uint, string> _names = [];
    private DateTime _stamp;

    public string NameOf(uint uid) => _names.TryGetValue(uid, out var name) ? name : string.Empty;

    public void Refresh()
    {
        try
        {
            var stamp = File.GetLastWriteTimeUtc(path);
            if (stamp == _stamp)
            {
                return;
            }

            var names = new Dictionary<uint, string>();
            foreach (var line in File.ReadLines(path))
            {
                var fields = line.Split(':');
                if (fields.Length > 2 && uint.TryParse(fields[2], NumberStyles.None, CultureInfo.InvariantCulture, out var uid))
                {
                    names.TryAdd(uid, fields[0]);
                }
            }

            _names = names;
            _stamp = stamp;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // No names: uids are still reported.
        }
    }
}
