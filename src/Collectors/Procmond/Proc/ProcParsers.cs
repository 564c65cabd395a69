using System.Buffers.Text;
using System.Text;

namespace DaemonEye.Collectors.Procmond.Proc;

/// <summary>The fields procmond uses from one /proc/&lt;pid&gt;/stat line.</summary>
/// <remarks>The command name is a range of the parsed bytes (<see cref="CommStart"/>,
/// <see cref="CommLength"/>), so a scan that finds it unchanged allocates nothing.</remarks>
internal struct ProcStat
{
    public int Pid;
    public int CommStart;
    public int CommLength;
    public char State;
    public int Ppid;
    public uint Flags;
    public ulong UserTicks;
    public ulong SystemTicks;
    public int Threads;
    public ulong StartTicks;
    public long RssPages;

    /// <summary>PF_KTHREAD: a kernel thread (no executable, no command line).</summary>
    public readonly bool IsKernelThread => (Flags & 0x00200000) != 0;

    /// <summary>
    /// The stat no longer names the parent: a process being reaped (zombie or dead) has released its
    /// signal state, and the kernel then writes 0 for ppid (pgrp and session too). Not a reparenting
    /// to 0: the parent is unknown from this read.
    /// </summary>
    public readonly bool ParentUnknown => Ppid == 0 && State is 'Z' or 'X';

    public readonly ReadOnlySpan<byte> Comm(ReadOnlySpan<byte> data) => data.Slice(CommStart, CommLength);
}

internal static class ProcParsers
{
    /// <summary>
    /// Parses /proc/&lt;pid&gt;/stat: <c>pid (comm) state ppid pgrp session tty tpgid flags minflt
    /// cminflt majflt cmajflt utime stime cutime cstime priority nice num_threads itrealvalue
    /// starttime vsize rss ...</c>. The comm may hold spaces and parentheses, so it ends at the
    /// <em>last</em> ')' of the line.
    /// </summary>
    public static bool TryParseStat(ReadOnlySpan<byte> data, out ProcStat stat)
    {
        stat = default;
        var open = data.IndexOf((byte)'(');
        var close = data.LastIndexOf((byte)')');
        if (open <= 0 || close < open || !Utf8Parser.TryParse(data[..open].TrimEnd((byte)' '), out stat.Pid, out _))
        {
            return false;
        }

        stat.CommStart = open + 1;
        stat.CommLength = close - open - 1;
        var rest = data[(close + 1)..];

        // Field 3 onwards, space-separated.
        var field = 3;
        while (!rest.IsEmpty && field <= 24)
        {
            rest = rest.TrimStart((byte)' ');
            var end = rest.IndexOfAny((byte)' ', (byte)'\n');
            var token = end < 0 ? rest : rest[..end];
            rest = end < 0 ? [] : rest[end..];
            if (token.IsEmpty)
            {
                break;
            }

            var ok = field switch
            {
                3 => SetState(token, ref stat),
                4 => Utf8Parser.TryParse(token, out stat.Ppid, out _),
                9 => Utf8Parser.TryParse(token, out stat.Flags, out _),
                14 => Utf8Parser.TryParse(token, out stat.UserTicks, out _),
                15 => Utf8Parser.TryParse(token, out stat.SystemTicks, out _),
                20 => Utf8Parser.TryParse(token, out stat.Threads, out _),
                22 => Utf8Parser.TryParse(token, out stat.StartTicks, out _),
                24 => Utf8Parser.TryParse(token, out stat.RssPages, out _),
                _ => true,
            };
            if (!ok)
            {
                return false;
            }

            field++;
        }

        return field > 24;
    }

    private static bool SetState(ReadOnlySpan<byte> token, ref ProcStat stat)
    {
        stat.State = (char)token[0];
        return token.Length == 1;
    }

    /// <summary>The real uid from /proc/&lt;pid&gt;/status (<c>Uid:\treal\teffective\tsaved\tfs</c>).</summary>
    public static bool TryParseStatusUid(ReadOnlySpan<byte> data, out uint uid) => TryParseStatusUids(data, out uid, out _);

    /// <summary>The real and effective uid of the "Uid:" line of /proc/&lt;pid&gt;/status.</summary>
    public static bool TryParseStatusUids(ReadOnlySpan<byte> data, out uint uid, out uint euid)
    {
        uid = 0;
        euid = 0;
        var line = data.IndexOf("\nUid:"u8);
        var at = data.StartsWith("Uid:"u8) ? 0 : line < 0 ? -1 : line + 1;
        if (at < 0)
        {
            return false;
        }

        var rest = data[(at + 4)..].TrimStart("\t "u8);
        if (!Utf8Parser.TryParse(rest, out uid, out var used))
        {
            return false;
        }

        return Utf8Parser.TryParse(rest[used..].TrimStart("\t "u8), out euid, out _);
    }

    /// <summary>/proc/&lt;pid&gt;/cmdline: arguments separated (and ended) by NUL. A process that
    /// rewrote its argument area may use spaces instead: then it is one argument.</summary>
    public static string[] ParseCommandLine(ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty)
        {
            return [];
        }

        if (data[^1] == 0)
        {
            data = data[..^1];
        }

        var count = data.Count((byte)0) + 1;
        var args = new string[count];
        for (var i = 0; i < count; i++)
        {
            var end = data.IndexOf((byte)0);
            var arg = end < 0 ? data : data[..end];
            args[i] = Encoding.UTF8.GetString(arg);
            data = end < 0 ? [] : data[(end + 1)..];
        }

        return args;
    }

    /// <summary>The longest comm the kernel keeps (TASK_COMM_LEN 16, less the NUL): longer names are cut.</summary>
    public const int MaxCommBytes = 15;

    /// <summary>
    /// The full name a cut comm stands for. The kernel's comm is the basename of the file passed to
    /// execve, cut at 15 bytes. When it is exactly that long (so possibly cut) and the basename of the
    /// executable, or else of argv[0], argv[1] or argv[2] (a #! script: the interpreter is the
    /// executable, the script an argument), is longer and begins with it, that basename is returned.
    /// Null otherwise (a short comm is whole; one set by prctl(PR_SET_NAME) matches nothing): the comm
    /// is the name.
    /// </summary>
    public static string? CompleteName(ReadOnlySpan<byte> comm, string executable, IReadOnlyList<string> commandLine)
    {
        if (comm.Length != MaxCommBytes)
        {
            return null;
        }

        if (Completes(comm, executable) is { } fromExecutable)
        {
            return fromExecutable;
        }

        for (var i = 0; i < commandLine.Count && i < 3; i++)
        {
            var arg = commandLine[i];
            if (commandLine.Count == 1 && arg.IndexOf(' ', StringComparison.Ordinal) is > 0 and var space)
            {
                // A process that rewrote its argument area into one string ("name: detail ..."): its first word.
                arg = arg[..space].TrimEnd(':');
            }

            if (Completes(comm, arg) is { } fromArgument)
            {
                return fromArgument;
            }
        }

        return null;

        static string? Completes(ReadOnlySpan<byte> comm, string path)
        {
            var basename = path[(path.LastIndexOf('/') + 1)..];
            var bytes = Encoding.UTF8.GetBytes(basename);
            return bytes.Length > comm.Length && bytes.AsSpan().StartsWith(comm) ? basename : null;
        }
    }

    /// <summary>btime (boot time, seconds since the epoch) from /proc/stat.</summary>
    public static bool TryParseBootTime(ReadOnlySpan<byte> data, out long bootTime)
    {
        bootTime = 0;
        ReadOnlySpan<byte> key = "btime "u8;
        var at = data.IndexOf(key);
        return at >= 0 && (at == 0 || data[at - 1] == (byte)'\n') && Utf8Parser.TryParse(data[(at + key.Length)..], out bootTime, out _);
    }

    /// <summary>uid → name from /etc/passwd lines (<c>name:x:uid:gid:...</c>); malformed lines are skipped.</summary>
    public static Dictionary<uint, string> ParsePasswd(string text)
    {
        var users = new Dictionary<uint, string>();
        foreach (var line in text.Split('\n'))
        {
            var parts = line.Split(':');
            if (parts.Length >= 3 && parts[0].Length > 0 && !line.StartsWith('#') && uint.TryParse(parts[2], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var uid))
            {
                users.TryAdd(uid, parts[0]);
            }
        }

        return users;
    }
}
