using System.Diagnostics;
using System.Runtime.InteropServices;

namespace DaemonEye.Cli.Commands;

/// <summary>
/// Waits for a publisher's next scheduled send time with microsecond accuracy: the thread sleeps
/// in the kernel (<c>nanosleep</c>, with its timer slack cut from the default 50 µs to 1 µs) until
/// <see cref="SpinMargin"/> before the deadline, then yields the CPU in a loop until the deadline.
/// <c>Thread.Sleep</c> counts whole milliseconds, and <c>Task.Delay</c> rides a timer of about
/// the same granularity: neither can pace 10,000 messages a second. Linux; one thread's own state.
/// </summary>
internal static partial class Pacer
{
    /// <summary>How long before a deadline the thread stops sleeping and starts yielding: above the
    /// kernel's wake-up latency on a small VM, so a sleep rarely overshoots.</summary>
    public static readonly TimeSpan SpinMargin = TimeSpan.FromMicroseconds(30);

    private const int PrSetTimerSlack = 29;
    private static readonly long MarginTicks = (long)(SpinMargin.TotalSeconds * Stopwatch.Frequency);

    /// <summary>Cuts the calling thread's timer slack to 1 µs (best effort: false when the kernel refused).</summary>
    public static bool UsePreciseTimers() => prctl(PrSetTimerSlack, 1000, 0, 0, 0) == 0;

    /// <summary>Returns at or just after <paramref name="deadline"/> (a <see cref="Stopwatch"/> timestamp).</summary>
    public static void WaitUntil(long deadline)
    {
        var sleep = deadline - Stopwatch.GetTimestamp() - MarginTicks;
        if (sleep > 0)
        {
            var nanos = (long)(sleep * (1e9 / Stopwatch.Frequency));
            var request = new Timespec { Seconds = nanos / 1_000_000_000, Nanoseconds = nanos % 1_000_000_000 };
            _ = nanosleep(request, IntPtr.Zero); // an early return (a signal) only means more yielding below
        }

        while (Stopwatch.GetTimestamp() < deadline)
        {
            Thread.Yield();
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int nanosleep(in Timespec request, IntPtr remaining);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int prctl(int option, ulong arg2, ulong arg3, ulong arg4, ulong arg5);
}
