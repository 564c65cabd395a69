using DaemonEye.Collectors.Procmond;

namespace DaemonEye.Procmond.Tests;

public sealed class ProcmondSettingsTests
{
    [Fact]
    public void Both_argument_forms_set_values()
    {
        var errors = new List<string>();
        var s = ProcmondSettings.Parse(["--scan-interval-ms", "250", "--cpu-threshold-percent=2.5", "--hash-queue-capacity", "8"], errors);

        Assert.Empty(errors);
        Assert.Equal(TimeSpan.FromMilliseconds(250), s.ScanInterval);
        Assert.Equal(2.5, s.CpuThresholdPercent);
        Assert.Equal(8, s.HashQueueCapacity);
    }

    [Fact]
    public void Every_problem_is_reported_together_with_what_is_allowed()
    {
        var errors = new List<string>();
        ProcmondSettings.Parse(["--scan-interval-ms", "10", "--bogus", "1", "stray", "--threads-threshold", "many", "--cpu-threshold-percent"], errors);

        Assert.Equal(5, errors.Count);
        Assert.Contains(errors, e => e.Contains("scan_interval_ms is '10'; allowed: a number from 50 to 3600000", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("unknown setting 'bogus'; known: scan_interval_ms", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("unexpected argument 'stray'", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("threads_threshold is 'many'", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("--cpu-threshold-percent needs a value", StringComparison.Ordinal));
    }

    [Fact]
    public void UpdateConfig_is_all_or_nothing_and_cannot_resize_the_hash_queue()
    {
        var s = new ProcmondSettings();
        var errors = new List<string>();

        s.Apply([new("scan_interval_ms", "500"), new("hash_queue_capacity", "9")], errors, atStart: false);

        Assert.Equal(TimeSpan.FromSeconds(1), s.ScanInterval);
        Assert.Contains("hash_queue_capacity is fixed when procmond starts", Assert.Single(errors), StringComparison.Ordinal);

        errors.Clear();
        s.Apply([new("scan_interval_ms", "500")], errors, atStart: false);
        Assert.Empty(errors);
        Assert.Equal(TimeSpan.FromMilliseconds(500), s.ScanInterval);
    }
}
