using DaemonEye.Cli.Commands;
using DaemonEye.Client.Internal;

namespace DaemonEye.Client.Tests;

public sealed class SmallPartsTests
{
    [Theory]
    [InlineData(1, 0.0, 50)]
    [InlineData(1, 1.0, 100)]
    [InlineData(3, 1.0, 400)]
    [InlineData(5, 0.5, 1200)]
    [InlineData(20, 1.0, 10_000)]
    [InlineData(1000, 0.0, 5_000)]
    public void Backoff_doubles_with_equal_jitter_up_to_the_cap(int attempt, double random, int expectedMs)
    {
        var delay = BusClient.BackoffDelay(attempt, TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(10), random);
        Assert.Equal(TimeSpan.FromMilliseconds(expectedMs), delay);
    }

    [Fact]
    public async Task The_writer_signal_keeps_a_release_for_the_next_wait_and_wakes_a_waiting_one()
    {
        var signal = new WriterSignal();
        signal.Release();
        signal.Release(); // two releases before a wait are one wake-up
        var first = signal.WaitAsync(CancellationToken.None).AsTask();
        Assert.True(first.IsCompletedSuccessfully);

        var waiting = signal.WaitAsync(CancellationToken.None).AsTask();
        Assert.False(waiting.IsCompleted);
        signal.Release();
        await waiting.WaitAsync(TimeSpan.FromSeconds(30));

        using var cts = new CancellationTokenSource();
        var cancelled = signal.WaitAsync(cts.Token).AsTask();
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled.WaitAsync(TimeSpan.FromSeconds(30)));

        // Still usable after a cancelled wait.
        var again = signal.WaitAsync(CancellationToken.None).AsTask();
        signal.Release();
        await again.WaitAsync(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public void Histogram_percentiles_are_within_bucket_precision()
    {
        var histogram = new LatencyHistogram();
        for (var v = 1; v <= 100_000; v++)
        {
            histogram.Record(v);
        }

        Assert.Equal(100_000, histogram.Count);
        Assert.InRange(histogram.ValueAt(50), 49_000, 51_000);
        Assert.InRange(histogram.ValueAt(99), 98_000, 100_000);
        Assert.Equal(100_000, histogram.Max);
    }

    [Fact]
    public void Histogram_buckets_are_monotonic_and_cover_their_values()
    {
        var previous = -1;
        foreach (var v in new long[] { 0, 1, 127, 128, 129, 255, 256, 1000, 123_456, 1L << 40 })
        {
            var index = LatencyHistogram.IndexOf(v);
            Assert.True(index >= previous);
            Assert.True(LatencyHistogram.LowerBound(index) <= v);
            previous = index;
        }
    }

    [Fact]
    public void Options_report_every_problem_at_once()
    {
        var options = new BusClientOptions { ClientId = "", MaxPendingBytes = 1, SubscriptionBufferSize = 0, ReconnectMinDelay = TimeSpan.FromSeconds(5), ReconnectMaxDelay = TimeSpan.FromSeconds(1) };
        var problems = options.Validate().ToList();
        Assert.Equal(4, problems.Count);
        Assert.Contains(problems, p => p.StartsWith("ClientId", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.StartsWith("MaxPendingBytes", StringComparison.Ordinal));
    }

    [Fact]
    public void Explicit_socket_path_wins()
    {
        var options = new BusClientOptions { SocketPath = "/tmp/x/bus.sock" };
        Assert.Equal("/tmp/x/bus.sock", options.ResolveSocketPath());
    }

    [Fact]
    public void Socket_path_comes_from_the_agent_configuration_file()
    {
        var dir = Directory.CreateTempSubdirectory("de-cfg-");
        try
        {
            var file = Path.Combine(dir.FullName, "daemoneye.yaml");
            File.WriteAllText(file, "broker:\n  socket_path: /tmp/from-config/bus.sock\n");
            Assert.Equal("/tmp/from-config/bus.sock", new BusClientOptions { ConfigPath = file }.ResolveSocketPath());
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }
}
