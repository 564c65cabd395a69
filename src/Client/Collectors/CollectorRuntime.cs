using System.Globalization;
using DaemonEye.Networking;

namespace DaemonEye.Client;

/// <summary>Process-wide runtime settings a collector may opt into; call them first thing in <c>Main</c>.</summary>
public static class CollectorRuntime
{
    /// <summary>The switch, read once by the runtime when the process makes its first socket, and by
    /// the SDK's reactor when the process makes its first bus connection.</summary>
    public const string InlineCompletionsVariable = DaemonEye.Networking.SocketReactor.InlineCompletionsVariable;

    /// <summary>
    /// Runs socket completions on the event thread instead of handing each to the thread pool: for
    /// the bus client that is the SDK's <see cref="DaemonEye.Networking.SocketReactor"/>, for other
    /// sockets the runtime's engine. The SDK's bus reader and writer never block, so a collector then reads a request,
    /// answers it and sends the answer without a thread hand-off (docs/benchmarks.md: the
    /// collector's CPU per HealthCheck fell by about a third). It applies to every
    /// socket in the process: do not use it when the collector's own code has socket continuations
    /// that block. It must run before the process's first socket. A value the operator has already
    /// set in the environment (<c>0</c> to opt out) is left alone.
    /// </summary>
    /// <returns>True when inline completions are on.</returns>
    public static bool UseInlineSocketCompletions()
    {
        if (Environment.GetEnvironmentVariable(InlineCompletionsVariable) is not { Length: > 0 } set)
        {
            Environment.SetEnvironmentVariable(InlineCompletionsVariable, "1");
            return true;
        }

        return set == "1";
    }

    /// <summary>The operator's override of <see cref="UseBusyPolling"/>: a window in microseconds, <c>0</c> to opt out.</summary>
    public const string BusyPollVariable = "DAEMONEYE_BUSY_POLL_MICROSECONDS";

    /// <summary>
    /// Keeps the SDK's socket thread polling for <paramref name="window"/> after each bus event
    /// before it sleeps (yielding the CPU between polls), so that an answer or the next request that
    /// comes within the window is read without waking a sleeping thread; reads in the window run on
    /// that thread, as with <see cref="UseInlineSocketCompletions"/>, so the same rule holds: code
    /// after a bus read must not block. It costs CPU while traffic flows and nothing when the bus is
    /// quiet. A value the operator set in <see cref="BusyPollVariable"/> wins. May be called at any
    /// time; it applies to every bus connection of the process.
    /// </summary>
    /// <returns>The window in effect.</returns>
    /// <exception cref="ArgumentException">The window, or the operator's value, is not 0 to <see cref="SocketReactor.MaxBusyPoll"/>.</exception>
    public static TimeSpan UseBusyPolling(TimeSpan window)
    {
        window = BusyPollInEffect(window);
        SocketReactor.Shared.BusyPoll = window;
        return window;
    }

    /// <summary>The window <see cref="UseBusyPolling"/> applies: the operator's <see cref="BusyPollVariable"/> if set, else <paramref name="requested"/>.</summary>
    internal static TimeSpan BusyPollInEffect(TimeSpan requested)
    {
        var max = SocketReactor.MaxBusyPoll;
        if (Environment.GetEnvironmentVariable(BusyPollVariable) is { Length: > 0 } set)
        {
            if (!int.TryParse(set, NumberStyles.None, CultureInfo.InvariantCulture, out var micros) || micros > max.TotalMicroseconds)
            {
                throw new ArgumentException($"{BusyPollVariable} is '{set}'; allowed: 0 (off) to {max.TotalMicroseconds} (microseconds)", nameof(requested));
            }

            return TimeSpan.FromMicroseconds(micros);
        }

        return requested >= TimeSpan.Zero && requested <= max
            ? requested
            : throw new ArgumentOutOfRangeException(nameof(requested), requested, $"the busy-poll window is {requested.TotalMicroseconds} µs; allowed: 0 (off) to {max.TotalMicroseconds} µs");
    }
}
