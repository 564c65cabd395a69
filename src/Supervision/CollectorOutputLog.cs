using System.Collections.Concurrent;
using DaemonEye.Logging;
using DaemonEye.Protocol.Ipc.V1;

namespace DaemonEye.Supervision;

/// <summary>
/// The last lines each collector wrote to stdout and stderr, for <c>daemoneye-cli logs</c>: a ring of
/// <see cref="Capacity"/> lines per collector id, kept across the collector's restarts (so the output
/// of the run that crashed is there), in memory only. Lines are escaped and cut as the agent's log
/// writes them (<see cref="UntrustedLine"/>).
/// </summary>
internal sealed class CollectorOutputLog(TimeProvider clock)
{
    public const int Capacity = 500;

    private readonly ConcurrentDictionary<string, Ring> _rings = new(StringComparer.Ordinal);

    public void Add(string collectorId, string stream, string line) =>
        _rings.GetOrAdd(collectorId, _ => new Ring()).Add(new CollectorLogLine
        {
            TimeUnixNanos = (ulong)(clock.GetUtcNow() - DateTimeOffset.UnixEpoch).Ticks * 100,
            Stream = stream,
            Text = new UntrustedLine(line).ToString(),
        });

    /// <summary>The most recent lines, oldest first (at most <paramref name="maxLines"/>; 0: all kept).</summary>
    public CollectorLogsResponse Read(string collectorId, uint maxLines)
    {
        var response = new CollectorLogsResponse { Id = collectorId, Capacity = Capacity };
        if (_rings.TryGetValue(collectorId, out var ring))
        {
            var (lines, discarded) = ring.Snapshot();
            response.Lines.AddRange(maxLines > 0 && lines.Count > maxLines ? lines.Skip(lines.Count - (int)maxLines) : lines);
            response.Discarded = discarded;
        }

        return response;
    }

    private sealed class Ring
    {
        private readonly CollectorLogLine[] _lines = new CollectorLogLine[Capacity];
        private long _written;

        public void Add(CollectorLogLine line)
        {
            lock (_lines)
            {
                _lines[_written % Capacity] = line;
                _written++;
            }
        }

        public (List<CollectorLogLine> Lines, ulong Discarded) Snapshot()
        {
            lock (_lines)
            {
                var count = (int)Math.Min(_written, Capacity);
                var lines = new List<CollectorLogLine>(count);
                for (var i = _written - count; i < _written; i++)
                {
                    lines.Add(_lines[i % Capacity]);
                }

                return (lines, (ulong)(_written - count));
            }
        }
    }
}
