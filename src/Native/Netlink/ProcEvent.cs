namespace DaemonEye.Native.Netlink;

/// <summary>What a proc connector event reports (<c>enum what</c> of linux/cn_proc.h).</summary>
public enum ProcEventKind : uint
{
    /// <summary>PROC_EVENT_NONE: the acknowledgement of a listen or ignore request.</summary>
    None = 0,
    Fork = 0x1,
    Exec = 0x2,
    Uid = 0x4,
    Gid = 0x40,
    Sid = 0x80,
    Ptrace = 0x100,
    Comm = 0x200,
    Coredump = 0x40000000,
    Exit = 0x80000000,
}

/// <summary>
/// One event of the proc connector, decoded. <see cref="Pid"/> is the thread the event is about and
/// <see cref="Tgid"/> its process (equal for a process's main thread); events of other threads
/// (pid ≠ tgid) are delivered too. The meaning of the other fields depends on <see cref="Kind"/>:
/// <list type="bullet">
/// <item>Fork: Pid/Tgid the child, ParentPid/ParentTgid the parent.</item>
/// <item>Uid, Gid: <see cref="Real"/> and <see cref="Effective"/> ids after the change.</item>
/// <item>Ptrace: <see cref="TracerPid"/>/<see cref="TracerTgid"/> the tracer on attach, 0 on detach.</item>
/// <item>Comm: <see cref="Comm"/> the new name.</item>
/// <item>Exit: <see cref="ExitCode"/> the wait status, <see cref="ExitSignal"/> the signal sent to the
/// parent (SIGCHLD), ParentPid/ParentTgid the parent.</item>
/// <item>Coredump: ParentPid/ParentTgid.</item>
/// <item>None: <see cref="AckError"/> the errno of the listen request (0: accepted).</item>
/// </list>
/// </summary>
public readonly record struct ProcEvent(
    ProcEventKind Kind,
    uint Cpu,
    ulong TimestampNs,
    int Pid,
    int Tgid,
    int RelatedPid,
    int RelatedTgid,
    uint Value1,
    uint Value2,
    string? Comm)
{
    public int ParentPid => RelatedPid;

    public int ParentTgid => RelatedTgid;

    public int TracerPid => RelatedPid;

    public int TracerTgid => RelatedTgid;

    public uint Real => Value1;

    public uint Effective => Value2;

    public uint ExitCode => Value1;

    public uint ExitSignal => Value2;

    public int AckError => (int)Value1;

    /// <summary>The event is about a process's main thread (or is a fork of a new process, not a thread).</summary>
    public bool IsProcess => Pid == Tgid;

    /// <summary>Exit: the process ended by exit(); <see cref="ExitStatus"/> is its status.</summary>
    public bool Exited => (ExitCode & 0x7F) == 0;

    public int ExitStatus => (int)((ExitCode >> 8) & 0xFF);

    /// <summary>Exit: the signal that killed the process (0 when it exited).</summary>
    public int TerminatingSignal => (int)(ExitCode & 0x7F);

    public bool CoreDumped => (ExitCode & 0x80) != 0;
}
