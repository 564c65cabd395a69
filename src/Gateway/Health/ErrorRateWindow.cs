namespace DaemonEye.Gateway.Health;

/// <summary>
/// The agent's error count over a sliding window: samples of the running total taken every
/// window/12 (and at every evaluation), so "errors in the last window" is the total now minus the
/// newest sample at least one window old (or the first sample, for an agent younger than the
/// window). The rate is that difference divided by the whole window, so a young agent is not judged
/// on a few seconds.
/// </summary>
internal sealed class ErrorRateWindow(TimeSpan window)
{
    private readonly Queue<(DateTimeOffset At, long Total)> _samples = new();
    private readonly Lock _gate = new();

    public TimeSpan Window => window;

    public TimeSpan SampleInterval => window / 12;

    public void Sample(DateTimeOffset now, long total)
    {
        lock (_gate)
        {
            _samples.Enqueue((now, total));
            // Keep one sample older than the window: it is the baseline.
            while (_samples.Count > 1 && _samples.ElementAt(1).At <= now - window)
            {
                _samples.Dequeue();
            }
        }
    }

    /// <summary>Errors in the last window, and their rate per second over the window.</summary>
    public (long Errors, double PerSecond) Evaluate(DateTimeOffset now, long total)
    {
        Sample(now, total);
        lock (_gate)
        {
            var baseline = _samples.Peek().Total;
            var errors = Math.Max(0, total - baseline);
            return (errors, errors / window.TotalSeconds);
        }
    }
}
