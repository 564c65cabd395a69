using DaemonEye.Protocol.Filesystem.V1;
using DaemonEye.Protocol.Network.V1;
using DaemonEye.Protocol.Process.V1;

namespace DaemonEye.Coordination;

/// <summary>Events into their tables: each collector message as one row.</summary>
public sealed partial class EventWindowDatabase
{
    /// <summary>procmond's started / executed / exited (events.process.lifecycle) into process_events.</summary>
    public void Append(ProcessLifecycle e)
    {
        ArgumentNullException.ThrowIfNull(e);
        var p = e.Process ?? new ProcessInfo();
        var (seq, arrived) = Arrive(ProcessEvents);
        var exited = e.Kind == ProcessLifecycleKind.Exited && e.ExitStatusKnown;
        Run(_insertProcess,
            seq, SnapshotDatabase.Name(e.Kind), (long)p.Pid, (long)p.Ppid, p.Name, p.Comm, p.Executable, string.Join(' ', p.CommandLine), (long)p.Uid, (long)p.Euid, p.User,
            (long)p.StartTimeUnixMs, p.ExeSha256, p.ExeDeleted ? 1 : 0, p.Stdin, p.Stdout, p.Stderr,
            SnapshotDatabase.SocketInode(p.Stdin), SnapshotDatabase.SocketInode(p.Stdout), SnapshotDatabase.SocketInode(p.Stderr),
            exited ? e.ExitCode : null, exited ? e.ExitSignal : null, (long)e.ObservedUnixMs, arrived, e.CollectorId);
    }

    /// <summary>netmond's opened / closed (events.network.connection) into connection_events.</summary>
    public void Append(ConnectionEvent e)
    {
        ArgumentNullException.ThrowIfNull(e);
        var x = e.Connection ?? new Connection();
        var o = x.Owner ?? new SocketOwner();
        var (seq, arrived) = Arrive(ConnectionEvents);
        Run(_insertConnection,
            seq, SnapshotDatabase.Name(e.Kind), SnapshotDatabase.Name(x.Transport), SnapshotDatabase.Name(x.Family),
            x.Local?.Address ?? string.Empty, (long)(x.Local?.Port ?? 0), x.Remote?.Address ?? string.Empty, (long)(x.Remote?.Port ?? 0),
            SnapshotDatabase.Name(x.Direction), x.State, (long)x.Inode, o.Attributed ? (long)o.Pid : null, o.Name, o.Executable, (long)o.Uid, o.User,
            (long)x.BytesSent, (long)x.BytesReceived, (long)e.ObservedUnixMs, arrived, e.CollectorId);
    }

    /// <summary>fsmond's created / modified / deleted / moved / attributes (events.filesystem.*) into filesystem_events.</summary>
    public void Append(FileEvent e)
    {
        ArgumentNullException.ThrowIfNull(e);
        var a = e.Actor ?? new Actor();
        var (seq, arrived) = Arrive(FilesystemEvents);
        Run(_insertFile,
            seq, SnapshotDatabase.Name(e.Kind), e.Path, e.NewPath, e.IsDirectory ? 1 : 0, a.Pid == 0 ? null : (long)a.Pid, a.Executable, a.Comm, (long)a.Uid, a.User,
            SnapshotDatabase.Name(a.Attribution), (long)e.Mode, (long)e.Size, e.Executable ? 1 : 0, (long)(e.TimeUnixNanos / 1_000_000), arrived, e.CollectorId);
    }
}
