using DaemonEye.Native;
using DaemonEye.Native.Inotify;

namespace DaemonEye.Collectors.Fsmond.Sources;

/// <summary>
/// The fallback where fanotify is refused: inotify, one watch per directory under each root (new
/// directories are watched as they appear; files made in one before its watch was added are
/// missed: inotify's known race), moves paired by cookie. inotify reports no process: every change
/// has pid 0, and the events say attribution is not available.
/// </summary>
internal sealed class InotifySource(int maxWatches) : ChangeSource
{
    private const InotifyMask Mask = InotifyMask.Create | InotifyMask.Modify | InotifyMask.CloseWrite | InotifyMask.Attrib
        | InotifyMask.MovedFrom | InotifyMask.MovedTo | InotifyMask.Delete | InotifyMask.DontFollow | InotifyMask.ExcludeUnlinked;

    private readonly InotifyInstance _inotify = InotifyInstance.Create();
    private readonly Dictionary<int, string> _directories = [];
    private readonly HashSet<string> _watched = new(StringComparer.Ordinal);
    private readonly List<InotifyEvent> _events = new(1024);
    private List<string> _roots = [];

    public override string Name => "inotify";

    /// <summary>Directories that could not be watched (the limit, or the kernel's).</summary>
    public long WatchFailures { get; private set; }

    public int Watches
    {
        get
        {
            lock (_directories)
            {
                return _directories.Count;
            }
        }
    }

    protected override KernelFile Descriptor => _inotify.File;

    public override void Watch(IReadOnlyList<string> roots)
    {
        lock (_directories)
        {
            _roots = [.. roots];
            foreach (var root in roots)
            {
                if (Directory.Exists(root))
                {
                    AddTree(root);
                }
                else
                {
                    AddOne(ExistingAncestor(root)); // to see the root appear
                }
            }
        }
    }

    private void AddTree(string directory)
    {
        AddOne(directory);
        var options = new EnumerationOptions { RecurseSubdirectories = true, IgnoreInaccessible = true, AttributesToSkip = FileAttributes.ReparsePoint };
        try
        {
            foreach (var sub in Directory.EnumerateDirectories(directory, "*", options))
            {
                AddOne(sub);
            }
        }
        catch (IOException)
        {
            WatchFailures++;
        }
    }

    private void AddOne(string directory)
    {
        if (_watched.Contains(directory))
        {
            return;
        }

        if (_directories.Count >= maxWatches)
        {
            WatchFailures++;
            return;
        }

        try
        {
            var wd = _inotify.AddWatch(directory, Mask);
            _directories[wd] = directory;
            _watched.Add(directory);
        }
        catch (KernelException)
        {
            WatchFailures++;
        }
    }

    private bool UnderRoot(string path) => _roots.Any(r => path == r || path.StartsWith(r == "/" ? "/" : r + "/", StringComparison.Ordinal)
        || r.StartsWith(path + "/", StringComparison.Ordinal));

    protected override int Read(Span<byte> buffer) => _inotify.Read(buffer);

    protected override void Decode(ReadOnlySpan<byte> bytes, List<RawChange> into)
    {
        _events.Clear();
        KernelEvents += InotifyInstance.Decode(bytes, _events);
        lock (_directories)
        {
            for (var i = 0; i < _events.Count; i++)
            {
                var e = _events[i];
                if ((e.Mask & InotifyMask.QueueOverflow) != 0)
                {
                    into.Add(new RawChange(ChangeKind.Overflow, 0, null, null, false, null));
                    continue;
                }

                if ((e.Mask & InotifyMask.Ignored) != 0)
                {
                    if (_directories.Remove(e.Watch, out var gone))
                    {
                        _watched.Remove(gone);
                    }

                    continue;
                }

                if (e.Name is null || !_directories.TryGetValue(e.Watch, out var directory))
                {
                    continue; // an event on a watched directory itself: its parent's watch reports it
                }

                var path = directory == "/" ? "/" + e.Name : directory + "/" + e.Name;
                var dir = (e.Mask & InotifyMask.IsDirectory) != 0;
                if (dir && (e.Mask & (InotifyMask.Create | InotifyMask.MovedTo)) != 0 && UnderRoot(path))
                {
                    AddTree(path);
                }

                if ((e.Mask & InotifyMask.Create) != 0)
                {
                    into.Add(new RawChange(ChangeKind.Created, 0, path, null, dir, null));
                }

                if ((e.Mask & InotifyMask.Modify) != 0)
                {
                    into.Add(new RawChange(ChangeKind.Written, 0, path, null, dir, null));
                }

                if ((e.Mask & InotifyMask.CloseWrite) != 0)
                {
                    into.Add(new RawChange(ChangeKind.ClosedWrite, 0, path, null, dir, null));
                }

                if ((e.Mask & InotifyMask.Attrib) != 0)
                {
                    into.Add(new RawChange(ChangeKind.Attributes, 0, path, null, dir, null));
                }

                if ((e.Mask & InotifyMask.MovedFrom) != 0)
                {
                    if (i + 1 < _events.Count && (_events[i + 1].Mask & InotifyMask.MovedTo) != 0 && _events[i + 1].Cookie == e.Cookie
                        && _directories.TryGetValue(_events[i + 1].Watch, out var toDirectory))
                    {
                        into.Add(new RawChange(ChangeKind.Moved, 0, path, toDirectory == "/" ? "/" + _events[i + 1].Name : toDirectory + "/" + _events[i + 1].Name, dir, null));
                        i++;
                    }
                    else
                    {
                        into.Add(new RawChange(ChangeKind.Moved, 0, path, null, dir, null));
                    }
                }
                else if ((e.Mask & InotifyMask.MovedTo) != 0)
                {
                    into.Add(new RawChange(ChangeKind.Moved, 0, null, path, dir, null));
                }

                if ((e.Mask & InotifyMask.Delete) != 0)
                {
                    into.Add(new RawChange(ChangeKind.Deleted, 0, path, null, dir, null));
                }
            }
        }
    }

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing)
        {
            _inotify.Dispose();
        }
    }
}
