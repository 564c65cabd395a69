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
        _insertProcess
            .Integer(seq).Text(SnapshotDatabase.Name(e.Kind)).Integer(p.Pid).Integer(p.Ppid).Text(p.Name).Text(p.Comm).Text(p.Executable).Text(string.Join(' ', p.CommandLine))
            .Integer(p.Uid).Integer(p.Euid).Text(p.User).Integer((long)p.StartTimeUnixMs).Text(p.ExeSha256).Flag(p.ExeDeleted).Text(p.Stdin).Text(p.Stdout).Text(p.Stderr)
            .Integer(SnapshotDatabase.SocketInode(p.Stdin)).Integer(SnapshotDatabase.SocketInode(p.Stdout)).Integer(SnapshotDatabase.SocketInode(p.Stderr))
            .Integer(exited ? e.ExitCode : null).Integer(exited ? e.ExitSignal : null).Integer((long)e.ObservedUnixMs).Integer(arrived).Text(e.CollectorId)
            .Insert();
    }

    /// <summary>netmond's opened / closed (events.network.connection) into connection_events.</summary>
    public void Append(ConnectionEvent e)
    {
        ArgumentNullException.ThrowIfNull(e);
        var x = e.Connection ?? new Connection();
        var o = x.Owner ?? new SocketOwner();
        var (seq, arrived) = Arrive(ConnectionEvents);
        _insertConnection
            .Integer(seq).Text(SnapshotDatabase.Name(e.Kind)).Text(SnapshotDatabase.Name(x.Transport)).Text(SnapshotDatabase.Name(x.Family))
            .Text(x.Local?.Address ?? string.Empty).Integer(x.Local?.Port ?? 0).Text(x.Remote?.Address ?? string.Empty).Integer(x.Remote?.Port ?? 0)
            .Text(SnapshotDatabase.Name(x.Direction)).Text(x.State).Integer((long)x.Inode).Integer(o.Attributed ? o.Pid : null).Text(o.Name).Text(o.Executable).Integer(o.Uid).Text(o.User)
            .Integer((long)x.BytesSent).Integer((long)x.BytesReceived).Integer((long)e.ObservedUnixMs).Integer(arrived).Text(e.CollectorId)
            .Insert();
    }

    /// <summary>fsmond's created / modified / deleted / moved / attributes (events.filesystem.*) into filesystem_events.</summary>
    public void Append(FileEvent e)
    {
        ArgumentNullException.ThrowIfNull(e);
        var a = e.Actor ?? new Actor();
        var (seq, arrived) = Arrive(FilesystemEvents);
        _insertFile
            .Integer(seq).Text(SnapshotDatabase.Name(e.Kind)).Text(e.Path).Text(e.NewPath).Flag(e.IsDirectory).Integer(a.Pid == 0 ? null : a.Pid).Text(a.Executable).Text(a.Comm)
            .Integer(a.Uid).Text(a.User).Text(SnapshotDatabase.Name(a.Attribution)).Integer(e.Mode).Integer((long)e.Size).Flag(e.Executable)
            .Integer((long)(e.TimeUnixNanos / 1_000_000)).Integer(arrived).Text(e.CollectorId)
            .Insert();
    }
}
