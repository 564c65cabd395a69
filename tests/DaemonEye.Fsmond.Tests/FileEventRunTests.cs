using System.Threading.Channels;
using DaemonEye.Collectors.Fsmond;
using Microsoft.Extensions.Time.Testing;

namespace DaemonEye.Fsmond.Tests;

/// <summary>
/// The run that, with the collector id and an event's sequence, names fsmond's events to the agent
/// (<c>FileSnapshot.run</c>): sequences start from 1 in every pipeline, so every pipeline needs a run
/// of its own, and 0 means "not given".
/// </summary>
public sealed class FileEventRunTests
{
    [Fact]
    public void Each_pipeline_numbers_its_events_in_a_run_of_its_own_that_is_never_zero()
    {
        var runs = Enumerable.Range(0, 16).Select(_ => Pipeline().Run).ToList();

        Assert.DoesNotContain(0UL, runs);
        Assert.Equal(runs.Count, runs.Distinct().Count());
    }

    private static FileEventPipeline Pipeline()
    {
        var time = new FakeTimeProvider();
        return new FileEventPipeline(
            new FsmondSettings(), Channel.CreateUnbounded<Outgoing>(), new IntegrityHasher(16, () => 1 << 20, time), "fanotify", new HashSet<int>(), "fsmond-test", time);
    }
}
