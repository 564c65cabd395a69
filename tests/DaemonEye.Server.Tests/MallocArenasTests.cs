using System.Runtime.InteropServices;
using DaemonEye.Silo;

namespace DaemonEye.Server.Tests;

// The tests set MALLOC_ARENA_MAX for this process, so they run one after the other (one class), and
// nothing else in the suite reads it.
public sealed class MallocArenasTests
{
    [Fact]
    public void The_arena_cap_is_set_through_glibc_and_nowhere_else()
    {
        var before = Environment.GetEnvironmentVariable("MALLOC_ARENA_MAX");
        Environment.SetEnvironmentVariable("MALLOC_ARENA_MAX", null);
        try
        {
            // glibc exports gnu_get_libc_version; other C libraries (musl) do not and have no arenas to cap.
            var glibc = NativeLibrary.TryLoad("libc.so.6", out var libc) && NativeLibrary.TryGetExport(libc, "gnu_get_libc_version", out _);
            Assert.Equal(glibc ? MallocArenas.Outcome.Limited : MallocArenas.Outcome.NotGlibc, MallocArenas.Limit());
        }
        finally
        {
            Environment.SetEnvironmentVariable("MALLOC_ARENA_MAX", before);
        }
    }

    [Fact]
    public void An_operators_MALLOC_ARENA_MAX_is_left_alone()
    {
        var before = Environment.GetEnvironmentVariable("MALLOC_ARENA_MAX");
        Environment.SetEnvironmentVariable("MALLOC_ARENA_MAX", "4");
        try
        {
            Assert.Equal(MallocArenas.Outcome.OperatorSet, MallocArenas.Limit());
        }
        finally
        {
            Environment.SetEnvironmentVariable("MALLOC_ARENA_MAX", before);
        }
    }

    [Fact]
    public void A_cap_below_one_is_refused() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => MallocArenas.Limit(0));
}
