using System.Numerics;
using System.Text.Json;

namespace DaemonEye.Cli.Commands;

/// <summary>
/// A log-linear histogram of non-negative values (HdrHistogram's idea, small): exact below 128,
/// then 64 buckets per power of two, so any recorded value is within 1/64 (1.6%) of its bucket.
/// Fixed size; recording never allocates. Not thread-safe: one per recording thread, then Merge.
/// </summary>
internal sealed class LatencyHistogram
{
    private const int Linear = 128;
    private const int PerOctave = 64;
    private const int Octaves = 48;
    private readonly long[] _counts = new long[Linear + (Octaves * PerOctave)];

    public long Count { get; private set; }

    public long Max { get; private set; }

    public double Sum { get; private set; }

    public void Record(long value)
    {
        if (value < 0)
        {
            value = 0;
        }

        _counts[IndexOf(value)]++;
        Count++;
        Sum += value;
        if (value > Max)
        {
            Max = value;
        }
    }

    public void Merge(LatencyHistogram other)
    {
        for (var i = 0; i < _counts.Length; i++)
        {
            _counts[i] += other._counts[i];
        }

        Count += other.Count;
        Sum += other.Sum;
        Max = Math.Max(Max, other.Max);
    }

    /// <summary>The benches' one-line summary of nanosecond latencies, in microseconds.</summary>
    public string Summary() =>
        $"p50 {Micros(ValueAt(50))} µs  p99 {Micros(ValueAt(99))} µs  p99.9 {Micros(ValueAt(99.9))} µs  max {Micros(Max)} µs";

    /// <summary>The benches' <c>latency_us</c> JSON object (p50, p99, p999, max, mean) of nanosecond latencies.</summary>
    public void WriteMicros(Utf8JsonWriter writer) => WriteMicros(writer, "latency_us");

    /// <summary>The same object under another name.</summary>
    public void WriteMicros(Utf8JsonWriter writer, string name)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.WriteStartObject(name);
        writer.WriteNumber("p50", Micros(ValueAt(50)));
        writer.WriteNumber("p99", Micros(ValueAt(99)));
        writer.WriteNumber("p999", Micros(ValueAt(99.9)));
        writer.WriteNumber("max", Micros(Max));
        writer.WriteNumber("mean", Count > 0 ? Math.Round(Sum / Count / 1000.0, 1) : 0);
        writer.WriteEndObject();
    }

    private static double Micros(long nanos) => Math.Round(nanos / 1000.0, 1);

    /// <summary>The value at or below which <paramref name="percentile"/> percent of the recorded values lie (bucket midpoint).</summary>
    public long ValueAt(double percentile)
    {
        if (Count == 0)
        {
            return 0;
        }

        var rank = (long)Math.Ceiling(percentile / 100.0 * Count);
        rank = Math.Clamp(rank, 1, Count);
        long seen = 0;
        for (var i = 0; i < _counts.Length; i++)
        {
            seen += _counts[i];
            if (seen >= rank)
            {
                return Math.Min(Midpoint(i), Max);
            }
        }

        return Max;
    }

    internal static int IndexOf(long value)
    {
        if (value < Linear)
        {
            return (int)value;
        }

        var msb = BitOperations.Log2((ulong)value); // >= 7
        var shift = msb - 6;
        var mantissa = (int)(value >> shift); // 64..127
        var index = Linear + ((shift - 1) * PerOctave) + (mantissa - PerOctave);
        return Math.Min(index, Linear + (Octaves * PerOctave) - 1);
    }

    internal static long LowerBound(int index)
    {
        if (index < Linear)
        {
            return index;
        }

        var k = index - Linear;
        var shift = (k / PerOctave) + 1;
        var mantissa = (k % PerOctave) + PerOctave;
        return (long)mantissa << shift;
    }

    private static long Midpoint(int index) =>
        index < Linear ? index : LowerBound(index) + ((1L << (((index - Linear) / PerOctave) + 1)) / 2);
}
