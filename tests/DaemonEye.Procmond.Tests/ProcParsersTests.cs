using System.Text;
using DaemonEye.Collectors.Procmond.Proc;

namespace DaemonEye.Procmond.Tests;

/// <summary>/proc file parsing on files captured from a real /proc (Fixtures/).</summary>
public sealed class ProcParsersTests
{
    private static byte[] Fixture(string name) => File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Fixtures", name));

    [Fact]
    public void Stat_with_spaces_and_parentheses_in_the_name_parses_every_field()
    {
        // A copy of sleep named "a) (b c": /proc/<pid>/stat is "30244 (a) (b c) S 30238 ...".
        var data = Fixture("stat-comm-with-parens");

        Assert.True(ProcParsers.TryParseStat(data, out var stat));

        Assert.Equal(30244, stat.Pid);
        Assert.Equal("a) (b c", Encoding.UTF8.GetString(stat.Comm(data)));
        Assert.Equal('S', stat.State);
        Assert.Equal(30238, stat.Ppid);
        Assert.Equal(4194304u, stat.Flags);
        Assert.False(stat.IsKernelThread);
        Assert.Equal(0ul, stat.UserTicks);
        Assert.Equal(0ul, stat.SystemTicks);
        Assert.Equal(1, stat.Threads);
        Assert.Equal(1035874ul, stat.StartTicks);
        Assert.Equal(426, stat.RssPages);
    }

    [Fact]
    public void A_kernel_thread_is_recognised_by_its_flags()
    {
        var data = Fixture("stat-kernel-thread");

        Assert.True(ProcParsers.TryParseStat(data, out var stat));

        Assert.Equal(2, stat.Pid);
        Assert.Equal("kthreadd", Encoding.UTF8.GetString(stat.Comm(data)));
        Assert.True(stat.IsKernelThread);
        Assert.Equal(0, stat.Ppid);
    }

    [Theory]
    [InlineData("")]
    [InlineData("30244 (a) (b c) S 30238")]
    [InlineData("x (sleep) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 1 2")]
    [InlineData("12 sleep S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 1 2")]
    [InlineData("12 (sleep) S 1 1 1 0 -1 0 0 0 0 0 zz 0 0 0 20 0 1 0 5 1 2")]
    public void Truncated_or_garbled_stat_is_rejected(string text)
    {
        Assert.False(ProcParsers.TryParseStat(Encoding.UTF8.GetBytes(text), out _));
    }

    [Fact]
    public void Status_gives_the_real_uid()
    {
        Assert.True(ProcParsers.TryParseStatusUid(Fixture("status-comm-with-parens"), out var uid));
        Assert.Equal(0u, uid);

        Assert.True(ProcParsers.TryParseStatusUid("Name:\tx\nUid:\t1000\t0\t0\t0\n"u8, out uid));
        Assert.Equal(1000u, uid);
        Assert.False(ProcParsers.TryParseStatusUid("Name:\tx\nGid:\t1\n"u8, out _));
    }

    [Fact]
    public void Command_line_splits_on_nul()
    {
        var args = ProcParsers.ParseCommandLine(Fixture("cmdline-comm-with-parens"));

        Assert.Equal(2, args.Length);
        Assert.EndsWith("/a) (b c", args[0], StringComparison.Ordinal);
        Assert.Equal("30", args[1]);
        Assert.Empty(ProcParsers.ParseCommandLine([]));
        Assert.Equal(["nginx: worker process"], ProcParsers.ParseCommandLine("nginx: worker process"u8));
        Assert.Equal(["a", "", "b"], ProcParsers.ParseCommandLine("a\0\0b\0"u8));
    }

    [Fact]
    public void Boot_time_comes_from_btime()
    {
        Assert.True(ProcParsers.TryParseBootTime(Fixture("proc-stat"), out var boot));
        Assert.Equal(1795601069, boot);
        Assert.False(ProcParsers.TryParseBootTime("cpu 1 2 3\n"u8, out _));
    }

    [Fact]
    public void Passwd_maps_uids_to_names_and_skips_bad_lines()
    {
        var users = ProcParsers.ParsePasswd("root:x:0:0:root:/root:/bin/bash\n# comment:x:5\nbroken\nalice:x:1000:1000::/home/alice:/bin/sh\nbob:x:notanumber:1::/:/bin/sh\n");

        Assert.Equal(2, users.Count);
        Assert.Equal("root", users[0]);
        Assert.Equal("alice", users[1000]);
    }

    [Fact]
    public void A_deleted_executable_link_is_split_from_its_suffix()
    {
        Assert.Equal(("/usr/bin/x", true), DaemonEye.Collectors.Procmond.ProcessTable.SplitLink("/usr/bin/x (deleted)"u8));
        Assert.Equal(("/usr/bin/x", false), DaemonEye.Collectors.Procmond.ProcessTable.SplitLink("/usr/bin/x"u8));
    }
}
