using DaemonEye.Native;
using DaemonEye.Native.Fanotify;

namespace DaemonEye.Collectors.Fsmond.Sources;

/// <summary>
/// fanotify with FAN_REPORT_DFID_NAME: one filesystem mark per filesystem holding a root (so every
/// change on it is reported with the acting pid; the globs filter in user space), FAN_RENAME for
/// moves (MOVED_FROM/MOVED_TO paired by pid on kernels before 5.17). Marks die with the group.
/// </summary>
internal sealed class FanotifySource : ChangeSource
{
    private const FanotifyMask Base = FanotifyMask.Create | FanotifyMask.Delete | FanotifyMask.Attrib
        | FanotifyMask.Modify | FanotifyMask.CloseWrite | FanotifyMask.OnDirectory;

    private readonly FanotifyGroup _group;
    private readonly FileHandleResolver _resolver = new();
    private readonly HashSet<ulong> _marked = [];
    private readonly List<FanotifyEvent> _events = new(1024);
    private FanotifyMask _moves = FanotifyMask.Rename;

    public FanotifySource(bool unlimitedQueue)
    {
        _group = FanotifyGroup.Create(FanotifyInitFlags.ReportDirFidName | FanotifyInitFlags.NonBlocking
            | (unlimitedQueue ? FanotifyInitFlags.UnlimitedQueue : 0));
    }

    public override string Name => "fanotify";

    public IReadOnlyCollection<ulong> MarkedFilesystems => _marked;

    public long NameLookups => _resolver.Lookups;

    protected override KernelFile Descriptor => _group.File;

    public override void Watch(IReadOnlyList<string> roots)
    {
        lock (_marked)
        {
            foreach (var root in roots)
            {
                var path = ExistingAncestor(root);
                var fsid = _resolver.Register(path);
                if (!_marked.Add(fsid))
                {
                    continue;
                }

                try
                {
                    _group.Add(path, FanotifyMarkTarget.Filesystem, Base | _moves);
                }
                catch (KernelException e) when (e.Errno == 22 && _moves == FanotifyMask.Rename)
                {
                    _moves = FanotifyMask.MovedFrom | FanotifyMask.MovedTo; // before Linux 5.17
                    _group.Add(path, FanotifyMarkTarget.Filesystem, Base | _moves);
                }
            }
        }
    }

    protected override int Read(Span<byte> buffer) => _group.Read(buffer);

    protected override void Decode(ReadOnlySpan<byte> bytes, List<RawChange> into)
    {
        _events.Clear();
        KernelEvents += FanotifyDecoder.Decode(bytes, _resolver, _events);
        for (var i = 0; i < _events.Count; i++)
        {
            var e = _events[i];
            var dir = e.IsDirectory;
            var m = e.Mask;
            if ((m & FanotifyMask.QueueOverflow) != 0)
            {
                into.Add(new RawChange(ChangeKind.Overflow, 0, null, null, false, null));
                continue;
            }

            // A merged event's bits, in the order they can happen to one name.
            if ((m & FanotifyMask.Create) != 0)
            {
                into.Add(new RawChange(ChangeKind.Created, e.Pid, e.Path, null, dir, e.Problem));
            }

            if ((m & FanotifyMask.MovedTo) != 0)
            {
                into.Add(new RawChange(ChangeKind.Moved, e.Pid, null, e.Path, dir, e.Problem));
            }

            if ((m & FanotifyMask.Modify) != 0)
            {
                into.Add(new RawChange(ChangeKind.Written, e.Pid, e.Path, null, dir, e.Problem));
            }

            if ((m & FanotifyMask.CloseWrite) != 0)
            {
                into.Add(new RawChange(ChangeKind.ClosedWrite, e.Pid, e.Path, null, dir, e.Problem));
            }

            if ((m & FanotifyMask.Attrib) != 0)
            {
                into.Add(new RawChange(ChangeKind.Attributes, e.Pid, e.Path, null, dir, e.Problem));
            }

            if ((m & FanotifyMask.Rename) != 0)
            {
                into.Add(new RawChange(ChangeKind.Moved, e.Pid, e.Path, e.NewPath, dir, e.Problem));
            }

            if ((m & FanotifyMask.MovedFrom) != 0)
            {
                // Pre-5.17 kernels: the MOVED_TO of the same process right after it is the other half.
                if (i + 1 < _events.Count && (_events[i + 1].Mask & FanotifyMask.MovedTo) != 0 && _events[i + 1].Pid == e.Pid)
                {
                    into.Add(new RawChange(ChangeKind.Moved, e.Pid, e.Path, _events[i + 1].Path, dir, e.Problem ?? _events[i + 1].Problem));
                    i++;
                }
                else
                {
                    into.Add(new RawChange(ChangeKind.Moved, e.Pid, e.Path, null, dir, e.Problem));
                }
            }

            if ((m & FanotifyMask.Delete) != 0)
            {
                into.Add(new RawChange(ChangeKind.Deleted, e.Pid, e.Path, null, dir, e.Problem));
            }
        }
    }

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing)
        {
            _group.Dispose();
            _resolver.Dispose();
        }
    }
}
