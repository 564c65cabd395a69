namespace DaemonEye.Native.Fanotify;

/// <summary>Event bits of a fanotify mark and of an event's mask (linux/fanotify.h).</summary>
[Flags]
#pragma warning disable CA1711 // the kernel's own name for a set of flags
public enum FanotifyMask : ulong
#pragma warning restore CA1711
{
    None = 0,
    Access = 0x1,
    Modify = 0x2,
    Attrib = 0x4,
    CloseWrite = 0x8,
    CloseNoWrite = 0x10,
    Open = 0x20,
    MovedFrom = 0x40,
    MovedTo = 0x80,
    Create = 0x100,
    Delete = 0x200,
    DeleteSelf = 0x400,
    MoveSelf = 0x800,
    OpenExec = 0x1000,

    /// <summary>The group's queue was full: events after this point were lost.</summary>
    QueueOverflow = 0x4000,
    FsError = 0x8000,

    /// <summary>One event for a rename, with the old and the new name (Linux 5.17).</summary>
    Rename = 0x1000_0000,

    /// <summary>The object is a directory (set on the mark to ask for directory events too).</summary>
    OnDirectory = 0x4000_0000,
}

/// <summary>fanotify_init flags.</summary>
[Flags]
public enum FanotifyInitFlags : uint
{
    /// <summary>FAN_CLASS_NOTIF: notification only, no permission events.</summary>
    Notification = 0,
    CloseOnExec = 0x1,
    NonBlocking = 0x2,

    /// <summary>No queue limit (CAP_SYS_ADMIN): no overflow, but kernel memory grows while the reader lags.</summary>
    UnlimitedQueue = 0x10,
    UnlimitedMarks = 0x20,
    ReportTid = 0x100,
    ReportFid = 0x200,
    ReportDirFid = 0x400,
    ReportName = 0x800,

    /// <summary>FAN_REPORT_DFID_NAME: each event names its directory (a file handle) and the entry's name (Linux 5.9).</summary>
    ReportDirFidName = ReportDirFid | ReportName,
}

/// <summary>What a mark covers.</summary>
public enum FanotifyMarkTarget : uint
{
    /// <summary>The inode (a directory: its entries with FAN_EVENT_ON_CHILD).</summary>
    Inode = 0,

    /// <summary>The mount the path is on. The kernel refuses directory-entry events (create, delete, move) on mount marks.</summary>
    Mount = 0x10,

    /// <summary>The whole filesystem the path is on: every mount of it, every event kind.</summary>
    Filesystem = 0x100,
}
