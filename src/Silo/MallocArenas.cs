using System.Runtime.InteropServices;

namespace DaemonEye.Silo;

/// <summary>
/// Caps glibc's malloc arenas for the agent. glibc gives a thread that meets a locked arena a new one,
/// up to eight per core, and keeps the pages each arena has touched resident after they are freed. In
/// the agent the big native allocations are the JIT's transient buffers (up to 9 MB at once) while tiered
/// compilation recompiles hot methods, which it does for half an hour and more as slow timers reach the
/// call-count threshold; each recompile could land in another arena, so resident memory crept up with a
/// flat GC heap (docs/benchmarks.md, "Agent cost": +13 % in 11 minutes of a soak, +2.6 % with two arenas).
/// The agent's native allocation rate is low (the GC heap is not malloc'd), so two arenas cost no
/// measurable contention. An operator's <c>MALLOC_ARENA_MAX</c> wins: glibc has applied it already.
/// </summary>
internal static partial class MallocArenas
{
    public const int Default = 2;

    private const int MArenaMax = -8; // M_ARENA_MAX in glibc's malloc.h

    /// <summary>What <see cref="Limit"/> did, for the start-up log.</summary>
    public enum Outcome
    {
        Limited,
        OperatorSet,
        NotGlibc,
    }

    /// <summary>Sets glibc's arena cap to <paramref name="arenas"/> unless the environment already set one.</summary>
    public static Outcome Limit(int arenas = Default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(arenas, 1);
        if (!string.IsNullOrEmpty(Environment.GetEnvironmentVariable("MALLOC_ARENA_MAX")))
        {
            return Outcome.OperatorSet;
        }

        try
        {
            // mallopt returns 1 on success; a C library without M_ARENA_MAX (musl has no arenas) returns 0.
            return Mallopt(MArenaMax, arenas) == 1 ? Outcome.Limited : Outcome.NotGlibc;
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            return Outcome.NotGlibc;
        }
    }

    [LibraryImport("libc", EntryPoint = "mallopt")]
    private static partial int Mallopt(int parameter, int value);
}
