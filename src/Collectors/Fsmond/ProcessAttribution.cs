using System.Globalization;
using DaemonEye.Native.Fanotify;
using DaemonEye.Protocol.Filesystem.V1;

namespace DaemonEye.Collectors.Fsmond;

/// <summary>
/// The process behind a pid, read from /proc when the event is handled: executable, real uid and
/// its name, comm. Answers are kept for one kernel read (a burst from one process costs one lookup);
/// a pid that is gone is said to be gone, never guessed.
/// </summary>
internal sealed class ProcessAttribution
{
    private readonly Dictionary<int, Actor> _batch = [];
    private Dictionary<uint, string> _users = ReadUsers();

    public void NextBatch() => _batch.Clear();

    public Actor For(int pid)
    {
        if (pid <= 0)
        {
            return new Actor { Attribution = Attribution.NotAvailable };
        }

        if (_batch.TryGetValue(pid, out var known))
        {
            return known;
        }

        var actor = new Actor { Pid = (uint)pid };
        var exe = FileHandleResolver.ReadLink($"/proc/{pid}/exe");
        string? status = null;
        try
        {
            status = File.ReadAllText($"/proc/{pid}/status");
            actor.Comm = File.ReadAllText($"/proc/{pid}/comm").TrimEnd('\n');
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        if (status is null)
        {
            actor.Attribution = Attribution.ProcessExited;
        }
        else
        {
            actor.Attribution = Attribution.Known;
            actor.Executable = exe ?? string.Empty;
            var uidLine = status.Split('\n').FirstOrDefault(l => l.StartsWith("Uid:", StringComparison.Ordinal));
            if (uidLine?.Split('\t', StringSplitOptions.RemoveEmptyEntries) is [_, var real, ..] && uint.TryParse(real, NumberStyles.None, CultureInfo.InvariantCulture, out var uid))
            {
                actor.Uid = uid;
                actor.User = UserName(uid);
            }
        }

        _batch[pid] = actor;
        return actor;
    }

    private string UserName(uint uid)
    {
        if (_users.TryGetValue(uid, out var name))
        {
            return name;
        }

        _users = ReadUsers(); // a user added since start
        return _users.GetValueOrDefault(uid, string.Empty);
    }

    private static Dictionary<uint, string> ReadUsers()
    {
        var users = new Dictionary<uint, string>();
        try
        {
            foreach (var line in File.ReadLines("/etc/passwd"))
            {
                var fields = line.Split(':');
                if (fields.Length > 2 && uint.TryParse(fields[2], NumberStyles.None, CultureInfo.InvariantCulture, out var uid))
                {
                    users.TryAdd(uid, fields[0]);
                }
            }
        }
        catch (IOException)
        {
        }

        return users;
    }
}
