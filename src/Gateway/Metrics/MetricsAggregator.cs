using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using DaemonEye.Protocol.Ipc.V1;

namespace DaemonEye.Gateway.Metrics;

/// <summary>
/// The agent's own reader of its instruments, for <c>daemoneye-cli metrics</c>: a
/// <see cref="MeterListener"/> on the meters the host's <see cref="IMeterFactory"/> created (so another host in
/// the same process is not mixed in) that keeps, per instrument and tag set, a counter's total, a
/// gauge's last value, or a histogram's count, sum and buckets. Observable instruments are read at
/// snapshot time; synchronous ones aggregate as they record (one dictionary-free path for untagged
/// instruments, a lookup by tag set otherwise).
/// </summary>
public sealed class MetricsAggregator : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly ConcurrentDictionary<Instrument, InstrumentState> _instruments = new();
    private readonly Lock _snapshotGate = new();

    public MetricsAggregator(IMeterFactory meters)
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (ReferenceEquals(instrument.Meter.Scope, meters) && MetricNames.Meters.Contains(instrument.Meter.Name))
            {
                var state = _instruments.GetOrAdd(instrument, i => new InstrumentState(i));
                listener.EnableMeasurementEvents(instrument, state);
            }
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, state) => ((InstrumentState)state!).Record(value, tags));
        _listener.SetMeasurementEventCallback<int>((instrument, value, tags, state) => ((InstrumentState)state!).Record(value, tags));
        _listener.SetMeasurementEventCallback<double>((instrument, value, tags, state) => ((InstrumentState)state!).Record(value, tags));
        _listener.Start();
    }

    /// <summary>Reads the observable instruments and returns every instrument's series, ordered by name.</summary>
    public IReadOnlyList<Metric> Snapshot()
    {
        lock (_snapshotGate)
        {
            _listener.RecordObservableInstruments();
            return [.. _instruments.Values.OrderBy(s => s.Instrument.Name, StringComparer.Ordinal).Select(s => s.ToMetric())];
        }
    }

    public void Dispose() => _listener.Dispose();

    private enum Kind
    {
        Counter,
        UpDownCounter,
        Gauge,
        Histogram,
    }

    private sealed class InstrumentState(Instrument instrument)
    {
        private readonly Kind _kind = instrument switch
        {
            Histogram<double> or Histogram<long> or Histogram<int> => Kind.Histogram,
            Counter<long> or Counter<int> or Counter<double> or ObservableCounter<long> or ObservableCounter<int> or ObservableCounter<double> => Kind.Counter,
            UpDownCounter<long> or UpDownCounter<int> or UpDownCounter<double> or ObservableUpDownCounter<long> or ObservableUpDownCounter<int> or ObservableUpDownCounter<double> => Kind.UpDownCounter,
            _ => Kind.Gauge,
        };

        private readonly ConcurrentDictionary<string, Series> _series = new(StringComparer.Ordinal);
        private readonly Series _untagged = new([]);
        private bool _untaggedUsed;

        public Instrument Instrument { get; } = instrument;

        public void Record(double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            Series series;
            if (tags.IsEmpty)
            {
                series = _untagged;
                _untaggedUsed = true;
            }
            else
            {
                var key = Key(tags);
                if (!_series.TryGetValue(key, out series!))
                {
                    series = _series.GetOrAdd(key, new Series(tags.ToArray()));
                }
            }

            lock (series)
            {
                switch (_kind)
                {
                    case Kind.Histogram:
                        series.Count++;
                        series.Sum += value;
                        var bucket = Array.BinarySearch(MetricNames.LatencyBuckets, value);
                        series.Buckets[bucket >= 0 ? bucket : ~bucket]++;
                        break;
                    case Kind.Counter or Kind.UpDownCounter when !Instrument.IsObservable:
                        series.Value += value;
                        break;
                    default:
                        // Observable: the callback reports the current total or value.
                        series.Value = value;
                        break;
                }
            }
        }

        private static string Key(ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var parts = new string[tags.Length];
            for (var i = 0; i < tags.Length; i++)
            {
                parts[i] = $"{tags[i].Key}={tags[i].Value}";
            }

            Array.Sort(parts, StringComparer.Ordinal);
            return string.Join('\u001f', parts);
        }

        public Metric ToMetric()
        {
            var metric = new Metric
            {
                Name = Instrument.Name,
                Meter = Instrument.Meter.Name,
                Unit = Instrument.Unit ?? string.Empty,
                Description = Instrument.Description ?? string.Empty,
                Kind = _kind switch
                {
                    Kind.Counter => "counter",
                    Kind.UpDownCounter => "updowncounter",
                    Kind.Histogram => "histogram",
                    _ => "gauge",
                },
            };
            var all = _series.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => p.Value);
            if (_untaggedUsed || (_series.IsEmpty && !Instrument.IsObservable))
            {
                all = all.Prepend(_untagged);
            }

            foreach (var series in all)
            {
                metric.Points.Add(series.ToPoint(_kind == Kind.Histogram));
            }

            return metric;
        }
    }

    private sealed class Series(KeyValuePair<string, object?>[] tags)
    {
        public double Value;
        public long Count;
        public double Sum;
        public readonly long[] Buckets = new long[MetricNames.LatencyBuckets.Length + 1];

        public MetricPoint ToPoint(bool histogram)
        {
            var point = new MetricPoint();
            foreach (var (key, value) in tags)
            {
                point.Tags[key] = value?.ToString() ?? string.Empty;
            }

            lock (this)
            {
                if (histogram)
                {
                    point.Count = (ulong)Count;
                    point.Sum = Sum;
                    point.Bounds.Add(MetricNames.LatencyBuckets);
                    point.BucketCounts.Add(Buckets.Select(b => (ulong)b));
                }
                else
                {
                    point.Value = Value;
                }
            }

            return point;
        }
    }
}
