using DaemonEye.Gateway.Durability;
using DaemonEye.Topics;

namespace DaemonEye.Gateway.Mqtt;

/// <summary>
/// One persistent MQTT session's QoS 1 filter over durable topics: a pump that reads the durable log
/// after the consumer's acknowledged sequence and hands the matching messages to the bridge for this
/// client only (<c>deliver</c>), at most <c>window</c> unacknowledged at once. PUBACKs may come in any order; the
/// consumer's stored position is the highest sequence below which everything read was acknowledged
/// (or did not match), so a restart redelivers what was not acknowledged and nothing acknowledged.
/// </summary>
internal sealed class MqttDurableSession(DurableLog log, Func<LoggedMessage, CancellationToken, Task> deliver, string consumer, string pattern, long holder, ulong acked, int window)
{
    private const int ReadBatch = 256;

    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _gate = new();
    private readonly SortedSet<ulong> _inflight = [];
    private TaskCompletionSource _credit = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ulong _start = acked;
    private ulong _read; // every sequence up to here was handed over (in flight) or skipped
    private ulong _stored;
    private Task _pump = Task.CompletedTask;
    private int _started;

    public string Consumer { get; } = consumer;

    public string Pattern { get; } = pattern;

    /// <summary>The connection number that holds the consumer in the log.</summary>
    public long Holder { get; } = holder;

    /// <summary>Starts the pump (once; later calls, e.g. the same filter subscribed again, do nothing).</summary>
    public void Start()
    {
        if (Interlocked.Exchange(ref _started, 1) != 0)
        {
            return;
        }

        _read = _stored = _start;
        _pump = Task.Run(() => PumpAsync(_stop.Token));
    }

    /// <summary>A PUBACK for <paramref name="sequence"/>: true when it was this session's; stores the new position when it advanced.</summary>
    public bool Acknowledge(ulong sequence)
    {
        ulong position;
        TaskCompletionSource credit;
        lock (_gate)
        {
            if (!_inflight.Remove(sequence))
            {
                return false;
            }

            position = _inflight.Count == 0 ? _read : _inflight.Min - 1;
            if (position <= _stored)
            {
                position = 0;
            }
            else
            {
                _stored = position;
            }

            credit = _credit;
            _credit = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        credit.TrySetResult();
        if (position > 0)
        {
            try
            {
                log.Ack(Consumer, position);
            }
            catch (DurableLogUnavailableException)
            {
                // Not stored: after a restart these are delivered again (at least once); counted by the log.
            }
            catch (ObjectDisposedException)
            {
                // The agent is stopping.
            }
        }

        return true;
    }

    public async Task StopAsync()
    {
        if (_stop.IsCancellationRequested)
        {
            return;
        }

        await _stop.CancelAsync();
        await _pump;
    }

    private async Task PumpAsync(CancellationToken stop)
    {
        try
        {
            using var reader = log.OpenReader();
            var rows = new List<LoggedMessage>(ReadBatch);
            var cursor = _start;
            while (!stop.IsCancellationRequested)
            {
                int room;
                Task credit;
                lock (_gate)
                {
                    room = window - _inflight.Count;
                    credit = _credit.Task;
                }

                if (room <= 0)
                {
                    await credit.WaitAsync(stop);
                    continue;
                }

                rows.Clear();
                if (reader.Read(cursor, Math.Min(ReadBatch, room), rows) == 0)
                {
                    await log.WaitForAppendAsync(cursor, stop);
                    continue;
                }

                foreach (var row in rows)
                {
                    cursor = row.Sequence;
                    var match = TopicRules.Matches(Pattern, row.Topic);
                    lock (_gate)
                    {
                        if (match)
                        {
                            _inflight.Add(row.Sequence);
                        }

                        _read = row.Sequence;
                    }

                    if (match)
                    {
                        await deliver(row, stop);
                    }
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
        catch (ObjectDisposedException)
        {
            // The log closed under the pump: the agent is stopping.
        }
    }
}
