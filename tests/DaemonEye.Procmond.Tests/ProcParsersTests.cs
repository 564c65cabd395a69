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

    [Fact]
    public void A_comm_the_kernel_cut_at_15_bytes_is_completed_from_the_executable()
    {
        // A copy of sleep named daemoneye-test-target: stat says "(daemoneye-test-)".
        var data = Fixture("stat-long-name");
        Assert.True(ProcParsers.TryParseStat(data, out var stat));
        var comm = stat.Comm(data);
        var args = ProcParsers.ParseCommandLine(Fixture("cmdline-long-name"));
        Assert.Equal("daemoneye-test-", Encoding.UTF8.GetString(comm));

        Assert.Equal("daemoneye-test-target", ProcParsers.CompleteName(comm, "/tmp/tmp.zDuOVkQtWq/daemoneye-test-target", args));
        // Executable unreadable (another user's process): argv[0] completes it.
        Assert.Equal("daemoneye-test-target", ProcParsers.CompleteName(comm, string.Empty, args));
    }

    [Fact]
    public void A_script_s_cut_comm_is_completed_from_its_argument()
    {
        // A #! script a-long-script-name.sh run by dash: exe is the interpreter, the script is argv[1].
        var data = Fixture("stat-script");
        Assert.True(ProcParsers.TryParseStat(data, out var stat));
        var args = ProcParsers.ParseCommandLine(Fixture("cmdline-script"));

        Assert.Equal("a-long-script-name.sh", ProcParsers.CompleteName(stat.Comm(data), "/usr/bin/dash", args));
    }

    [Theory]
    // Shorter than 15 bytes: whole, even when the executable is longer.
    [InlineData("cat", "/usr/bin/catalogue-builder", "catalogue-builder")]
    // 15 bytes set by prctl(PR_SET_NAME) that begin nothing: the comm stays.
    [InlineData("worker-thread-1", "/usr/bin/python3", "python3 /srv/app.py")]
    // Exactly 15 bytes and the basename is exactly the comm: nothing was cut.
    [InlineData("exactly15chars!", "/opt/exactly15chars!", "exactly15chars!")]
    // An argument that is not the script (argv[3] and later are never looked at).
    [InlineData("daemoneye-test-", "/usr/bin/env", "env a b daemoneye-test-target")]
    public void A_comm_that_was_not_cut_or_matches_nothing_is_not_completed(string comm, string executable, string commandLine)
    {
        Assert.Null(ProcParsers.CompleteName(Encoding.UTF8.GetBytes(comm), executable, commandLine.Split(' ')));
    }

    [Fact]
    public void A_rewritten_argument_area_completes_the_comm_from_its_first_word()
    {
        // One argument holding spaces: the process wrote its title over argv ("name: detail").
        Assert.Equal("kube-controller-manager", ProcParsers.CompleteName("kube-controller"u8, string.Empty, ["kube-controller-manager: leader"]));
    }

    [Fact]
    public void A_multibyte_name_cut_inside_a_character_is_completed()
    {
        // 14 ASCII bytes, then "ü" (two bytes): the kernel's 15 bytes end inside the ü.
        var full = "daemoneye-testüber";
        var comm = Encoding.UTF8.GetBytes(full).AsSpan(0, 15).ToArray();

        Assert.Equal(full, ProcParsers.CompleteName(comm, "/usr/sbin/" + full, [full]));
    }
}
