using DaemonEye.Topics;

namespace DaemonEye.Gateway.Durability;

/// <summary>
/// The one way a durable consumer is served (a bus durable subscription, an MQTT persistent QoS 1
/// filter): a pump that reads the durable log after the consumer's position on its own reader, keeps the
/// messages matching its pattern, stays within a window of unacknowledged messages (by count and by
/// bytes) and, caught up, waits for the next append. Replay and live delivery are the same read, so
/// nothing is missed or doubled between them; nothing is dropped: a slow consumer only slows its pump.
/// </summary>
/// <remarks>
/// A subclass says only what differs: how a matching message is staged and what it costs against the
/// byte window (<see cref="Stage"/>), how the staged messages are handed over (<see cref="FlushAsync"/>),
/// how its acks map (<see cref="ReleaseThrough"/> cumulative, <see cref="Release"/> single, which also
/// yields the position to store), and what a failure does (<see cref="Failed"/>). The pump calls
/// Stage and FlushAsync on its own task, never after <see cref="StopAsync"/> has completed.
/// </remarks>
internal abstract class DurablePump
{
    private const int ReadBatch = 512;

    /// <summary>Topics whose match result is remembered; a log with more distinct topics matches the rest each time.</summary>
    private const int MatchCacheCapacity = 4096;

    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _gate = new();
    private readonly InFlightWindow _inFlight = new();
    private readonly int _maxInFlight;
    private readonly long _maxInFlightBytes;
    private readonly ulong _after;
    private TaskCompletionSource _credit = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private ulong _read; // every sequence up to here was staged (and is in flight or acknowledged) or did not match
    private ulong _position; // the highest position Release has reported
    private Task _pump = Task.CompletedTask;
    private bool _started, _stopped;

    /// <param name="log">The durable log.</param>
    /// <param name="pattern">The topic pattern whose messages the consumer gets.</param>
    /// <param name="after">The consumer's position: delivery starts after this sequence.</param>
    /// <param name="maxInFlight">Messages handed over and not acknowledged, at most.</param>
    /// <param name="maxInFlightBytes">Once this many bytes are in flight, the pump waits for acks.</param>
    protected DurablePump(DurableLog log, string pattern, ulong after, int maxInFlight, long maxInFlightBytes)
    {
        Log = log;
        Pattern = pattern;
        _after = _read = _position = after;
        _maxInFlight = maxInFlight;
        _maxInFlightBytes = maxInFlightBytes;
    }

    public string Pattern { get; }

    /// <summary>Messages handed over and not acknowledged, at most (the count window).</summary>
    public int MaxInFlight => _maxInFlight;

    /// <summary>Messages handed over and not acknowledged now.</summary>
    public int InFlight
    {
        get
        {
            lock (_gate)
            {
                return _inFlight.Count;
            }
        }
    }

    protected DurableLog Log { get; }

    /// <summary>Starts the pump (once; later calls, and calls after <see cref="StopAsync"/>, do nothing).</summary>
    public void Start()
    {
        lock (_gate)
        {
            if (_started || _stopped)
            {
                return;
            }

            _started = true;
            var stop = _stop.Token;
            _pump = Task.Run(() => PumpAsync(stop));
        }
    }

    /// <summary>Stops the pump; once the first call completes it hands over nothing more.</summary>
    public async Task StopAsync()
    {
        Task pump;
        lock (_gate)
        {
            if (_stopped)
            {
                return;
            }

            _stopped = true;
            pump = _pump;
        }

        // Not disposed: a source without a timer holds nothing to release, and a late Start must still read its token.
        await _stop.CancelAsync();
        await pump;
    }

    /// <summary>Stages one matching message (in log order) and returns what it costs against the byte window.</summary>
    protected abstract int Stage(LoggedMessage row);

    /// <summary>Hands over the <paramref name="count"/> messages staged since the last flush; they are in flight already.</summary>
    protected abstract ValueTask FlushAsync(int count, CancellationToken stop);

    /// <summary>The pump stopped on <paramref name="exception"/> (not on <see cref="StopAsync"/>); it hands over nothing more.</summary>
    protected abstract void Failed(Exception exception);

    /// <summary>A cumulative ack: frees the window of everything in flight up to <paramref name="sequence"/>.</summary>
    protected void ReleaseThrough(ulong sequence)
    {
        TaskCompletionSource credit;
        lock (_gate)
        {
            _inFlight.ReleaseThrough(sequence);
            credit = RenewCredit();
        }

        credit.TrySetResult();
    }

    /// <summary>
    /// A single ack of <paramref name="sequence"/>: false when it is not in flight. Otherwise frees its
    /// place in the window and sets <paramref name="position"/> to the consumer's new position, the highest
    /// sequence below which everything read was acknowledged or did not match, when it advanced (else 0).
    /// </summary>
    protected bool Release(ulong sequence, out ulong position)
    {
        position = 0;
        TaskCompletionSource credit;
        lock (_gate)
        {
            if (!_inFlight.Release(sequence))
            {
                return false;
            }

            var reached = _inFlight.TryGetOldest(out var oldest) ? oldest - 1 : _read;
            if (reached > _position)
            {
                position = _position = reached;
            }

            credit = RenewCredit();
        }

        credit.TrySetResult();
        return true;
    }

    private TaskCompletionSource RenewCredit()
    {
        var credit = _credit;
        _credit = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        return credit;
    }

    private async Task PumpAsync(CancellationToken stop)
    {
        try
        {
            await DeliverAsync(stop);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            Failed(e);
        }
    }

    private async Task DeliverAsync(CancellationToken stop)
    {
        using var reader = Log.OpenReader();
        var rows = new List<LoggedMessage>(ReadBatch);
        var matches = new Dictionary<string, bool>(StringComparer.Ordinal);
        var cursor = _after;
        while (!stop.IsCancellationRequested)
        {
            int room;
            Task credit;
            lock (_gate)
            {
                room = _inFlight.Bytes >= _maxInFlightBytes ? 0 : _maxInFlight - _inFlight.Count;
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
                await Log.WaitForAppendAsync(cursor, stop);
                continue;
            }

            var count = 0;
            foreach (var row in rows)
            {
                cursor = row.Sequence;
                if (!matches.TryGetValue(row.Topic, out var match))
                {
                    match = TopicRules.Matches(Pattern, row.Topic);
                    if (matches.Count < MatchCacheCapacity)
                    {
                        matches[row.Topic] = match;
                    }
                }

                if (!match)
                {
                    continue;
                }

                var bytes = Stage(row);
                lock (_gate)
                {
                    _inFlight.Add(row.Sequence, bytes);
                }

                count++;
            }

            // Before the hand-over: an ack of a staged message may arrive while the rest are still going out.
            lock (_gate)
            {
                _read = cursor;
            }

            if (count > 0)
            {
                stop.ThrowIfCancellationRequested();
                await FlushAsync(count, stop);
            }
        }
    }
}
