using DaemonEye.Collectors.Fsmond;

namespace DaemonEye.Fsmond.Tests;

public sealed class FsmondSettingsTests
{
    [Fact]
    public void Every_bad_argument_is_reported_and_nothing_changes()
    {
        var errors = new List<string>();
        var s = FsmondSettings.Parse(["--watch", "etc/**", "--bulk-threshold", "0", "--source", "ebpf", "--nope", "1", "--bulk-window-ms=500"], errors);
        Assert.Equal(4, errors.Count);
        Assert.Contains(errors, e => e.Contains("absolute", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("bulk_threshold is '0'", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("auto, fanotify, inotify", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("unknown setting 'nope'", StringComparison.Ordinal));
        Assert.Equal(TimeSpan.FromSeconds(60), s.BulkWindow);
    }

    [Fact]
    public void Start_only_settings_are_refused_while_running()
    {
        var errors = new List<string>();
        new FsmondSettings().Apply([new("source", "inotify")], errors, atStart: false);
        Assert.Contains("fixed when fsmond starts", Assert.Single(errors), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("/etc/**", "/etc", true)]
    [InlineData("/etc/**", "/etc/ssh/sshd_config", true)]
    [InlineData("/etc/**", "/etcetera", false)]
    [InlineData("/home/*/.ssh/**", "/home/bob/.ssh/authorized_keys", true)]
    [InlineData("/home/*/.ssh/**", "/home/bob/x/.ssh/authorized_keys", false)]
    [InlineData("**/*.swp", "/etc/.passwd.swp", true)]
    [InlineData("/etc/passwd", "/etc/passwd-", false)]
    public void Globs_match_by_segment(string glob, string path, bool matches) =>
        Assert.Equal(matches, PathGlob.Compile([glob])!.IsMatch(path));

    [Fact]
    public void The_defaults_watch_a_servers_sensitive_places_and_their_roots_are_directories()
    {
        var filter = new PathFilter(new FsmondSettings());
        Assert.Equal(PathClass.Watched, filter.Classify("/root/.ssh/authorized_keys"));
        Assert.Equal(PathClass.Watched, filter.Classify("/etc/cron.d/job"));
        Assert.Equal(PathClass.ExecutableOnly, filter.Classify("/tmp/x"));
        Assert.Equal(PathClass.Ignored, filter.Classify("/var/log/syslog"));
        Assert.True(filter.IsIntegrity("/usr/bin/ls"));
        Assert.Contains("/etc", filter.Roots);
        Assert.Contains("/home", filter.Roots);
    }
}
