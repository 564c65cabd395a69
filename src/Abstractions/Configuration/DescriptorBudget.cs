using System.Globalization;

namespace DaemonEye.Configuration;

/// <summary>
/// The file descriptors the agent may need at once, against its open-file limit (RLIMIT_NOFILE,
/// systemd's <c>LimitNOFILE=</c>): every bus connection the configuration allows
/// (<c>broker.max_connections</c> + <c>broker.reserved_collector_connections</c>), every IPC
/// connection (<c>ipc.max_connections</c>), and headroom for the rest (the silo, the runtime, log
/// and rule files, the metrics endpoint) and for each collector's pipes. Checked when the agent
/// starts, with the limit of the agent's own process; not by <c>config validate</c>, whose process
/// has its own limit.
/// </summary>
public static class DescriptorBudget
{
    /// <summary>Descriptors kept for everything that is not a client connection.</summary>
    /// <remarks>
    /// An idle agent with procmond holds about 265: mostly the runtime's open assembly files (two each),
    /// then pipes, sockets, epoll. Assemblies loaded later (the dashboard, an error path) add to it.
    /// </remarks>
    public const int Headroom = 512;

    /// <summary>Descriptors per configured collector: its stdin, stdout and stderr pipes and a spare.</summary>
    public const int PerCollector = 4;

    /// <summary>The descriptors the configuration may need at once.</summary>
    public static long Needed(BrokerOptions broker, IpcOptions ipc, int collectors) =>
        (long)broker.MaxConnections + broker.ReservedCollectorConnections + ipc.MaxConnections + Headroom + ((long)PerCollector * collectors);

    /// <summary>Why the configuration does not fit under <paramref name="limit"/>, or null when it does.</summary>
    public static string? Problem(BrokerOptions broker, IpcOptions ipc, int collectors, ulong limit)
    {
        var needed = Needed(broker, ipc, collectors);
        if ((ulong)needed <= limit)
        {
            return null;
        }

        return string.Create(CultureInfo.InvariantCulture,
            $"broker.max_connections ({broker.MaxConnections}) + broker.reserved_collector_connections ({broker.ReservedCollectorConnections}) + ipc.max_connections ({ipc.MaxConnections}) + {Headroom} descriptors of headroom + {PerCollector} per collector ({collectors}) = {needed} file descriptors, more than the agent's open-file limit RLIMIT_NOFILE ({limit}); raise the limit (LimitNOFILE= in the systemd unit, which ships 65536; ulimit -n for a shell) or lower those keys");
    }
}
