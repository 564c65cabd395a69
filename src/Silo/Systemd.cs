using System.Net.Sockets;
using System.Text;
using Serilog.Core;
using Serilog.Events;

namespace DaemonEye.Silo;

/// <summary>
/// The two things the agent needs from systemd, without a dependency: sd_notify (a datagram to
/// <c>$NOTIFY_SOCKET</c>, for <c>Type=notify</c>) and knowing whether stdout goes to the journal
/// (<c>$JOURNAL_STREAM</c>).
/// </summary>
internal static class Systemd
{
    public const string NotifySocketVariable = "NOTIFY_SOCKET";

    /// <summary>
    /// Sends <paramref name="state"/> (e.g. <c>READY=1</c>) to the socket named by $NOTIFY_SOCKET, if
    /// set; a leading '@' names an abstract socket. Returns why it failed, or null (also when not
    /// running under systemd).
    /// </summary>
    public static string? Notify(string state)
    {
        var path = Environment.GetEnvironmentVariable(NotifySocketVariable);
        if (string.IsNullOrEmpty(path))
        {
            return null;
        }

        try
        {
            // Abstract socket names start with a NUL byte; systemd writes it as '@'.
            var address = path[0] == '@' ? "\0" + path[1..] : path;
            using var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
            socket.Connect(new UnixDomainSocketEndPoint(address));
            socket.Send(Encoding.UTF8.GetBytes(state));
            return null;
        }
        catch (SocketException ex)
        {
            return $"{NotifySocketVariable}={path}: {ex.Message}";
        }
    }

    /// <summary>
    /// True when stdout or stderr is the journal stream systemd connected. $JOURNAL_STREAM is
    /// "device:inode" of that socket; /proc/self/fd/N of a socket reads "socket:[inode]", so the
    /// inode is compared (a stale value inherited by a child whose output goes elsewhere does not match).
    /// </summary>
    public static bool IsJournalStream()
    {
        var value = Environment.GetEnvironmentVariable("JOURNAL_STREAM");
        var colon = value?.IndexOf(':', StringComparison.Ordinal) ?? -1;
        if (value is null || colon < 0)
        {
            return false;
        }

        var inode = value[(colon + 1)..];
        foreach (var fd in new[] { 1, 2 })
        {
            try
            {
                if (new FileInfo($"/proc/self/fd/{fd}").LinkTarget is { } target && target == $"socket:[{inode}]")
                {
                    return true;
                }
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        }

        return false;
    }

    /// <summary>Adds SyslogPriority (3 error … 7 debug) for the <c>&lt;N&gt;</c> prefix journald understands.</summary>
    internal sealed class SyslogPriorityEnricher : ILogEventEnricher
    {
        private static readonly LogEventProperty[] Priorities =
        [
            new("SyslogPriority", new ScalarValue(7)), // Verbose: debug
            new("SyslogPriority", new ScalarValue(7)), // Debug
            new("SyslogPriority", new ScalarValue(6)), // Information: info
            new("SyslogPriority", new ScalarValue(4)), // Warning: warning
            new("SyslogPriority", new ScalarValue(3)), // Error: err
            new("SyslogPriority", new ScalarValue(2)), // Fatal: crit
        ];

        public void Enrich(LogEvent logEvent, ILogEventPropertyFactory propertyFactory) =>
            logEvent.AddPropertyIfAbsent(Priorities[(int)logEvent.Level]);
    }
}
