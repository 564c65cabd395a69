using System.Buffers;
using DaemonEye.Protocol.Wire;
using DaemonEye.Topics;

namespace DaemonEye.Gateway.Durability;

/// <summary>
/// One durable subscription on one connection: a pump that reads the durable log after the
/// consumer's position and hands Deliver frames to the connection, in log order, never more than
/// durability.max_ack_pending messages (and half of broker.max_outbound_bytes) ahead of the
/// client's acks. Caught up, it waits for the next append. Nothing is dropped: a slow consumer
/// only slows its own pump.
/// </summary>
internal sealed class DurableSubscription(DurableLog log, string consumer, string pattern, uint subscriptionId, ulong acked, int maxAckPending, long maxUnackedBytes, Action<byte[], int> send, Action<Exception> failed)
{
    private const int ReadBatch = 512;

    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _gate = new();
    private readonly Queue<(ulong Sequence, int Bytes)> _unacked = new();
    private readonly uint[] _ids = [subscriptionId];
    private TaskCompletionSource _credit = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _unackedBytes;
    private Task _pump = Task.CompletedTask;

    public string Consumer { get; } = consumer;

    public uint SubscriptionId => subscriptionId;

    /// <summary>Starts delivering (call after the SubscribeAck is queued).</summary>
    public void Start() => _pump = Task.Run(() => PumpAsync(_stop.Token));

    /// <summary>A cumulative ack: frees credit for everything delivered up to <paramref name="sequence"/>.</summary>
    public void Acknowledge(ulong sequence)
    {
        TaskCompletionSource credit;
        lock (_gate)
        {
            while (_unacked.TryPeek(out var head) && head.Sequence <= sequence)
            {
                _unacked.Dequeue();
                _unackedBytes -= head.Bytes;
            }

            credit = _credit;
            _credit = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        credit.TrySetResult();
    }

    /// <summary>Stops the pump; once this completes it hands over nothing more.</summary>
    public async Task StopAsync()
    {
        await _stop.CancelAsync();
        await _pump;
        _stop.Dispose();
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
            failed(e);
        }
    }

    private async Task DeliverAsync(CancellationToken stop)
    {
        using var reader = log.OpenReader();
        var rows = new List<LoggedMessage>(ReadBatch);
        var frames = new ArrayBufferWriter<byte>(64 * 1024);
        var matches = new Dictionary<string, bool>(StringComparer.Ordinal);
        var cursor = acked;
        while (!stop.IsCancellationRequested)
        {
            int room;
            Task credit;
            lock (_gate)
            {
                room = _unackedBytes >= maxUnackedBytes ? 0 : maxAckPending - _unacked.Count;
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

            var count = 0;
            foreach (var row in rows)
            {
                cursor = row.Sequence;
                if (!matches.TryGetValue(row.Topic, out var match))
                {
                    match = matches.Count < 4096 ? (matches[row.Topic] = TopicRules.Matches(pattern, row.Topic)) : TopicRules.Matches(pattern, row.Topic);
                }

                if (!match)
                {
                    continue;
                }

                var before = frames.WrittenCount;
                DeliverFrame.Write(frames, _ids, row.Sequence, row.Publish);
                lock (_gate)
                {
                    _unacked.Enqueue((row.Sequence, frames.WrittenCount - before));
                    _unackedBytes += frames.WrittenCount - before;
                }

                count++;
            }

            if (count > 0)
            {
                stop.ThrowIfCancellationRequested();
                send(frames.WrittenSpan.ToArray(), count);
                frames.ResetWrittenCount();
            }
        }
    }
}
