using DaemonEye.Gateway.Durability;

namespace DaemonEye.Gateway.Mqtt;

/// <summary>
/// One persistent MQTT session's QoS 1 filter over durable topics, served by a <see cref="DurablePump"/>:
/// each matching message goes to the bridge for this client only (<c>deliver</c>), at most <c>window</c>
/// unacknowledged at once. PUBACKs may come in any order; each one that advances the consumer's position
/// (the highest sequence below which everything read was acknowledged or did not match) stores it, so a
/// restart redelivers what was not acknowledged and nothing acknowledged.
/// </summary>
internal sealed class MqttDurableSession(DurableLog log, Func<LoggedMessage, CancellationToken, Task> deliver, string consumer, string pattern, long holder, ulong acked, int window, Action<Exception>? failed = null)
    : DurablePump(log, pattern, acked, window, long.MaxValue)
{
    private readonly List<LoggedMessage> _staged = [];

    public string Consumer { get; } = consumer;

    /// <summary>The connection number that holds the consumer in the log.</summary>
    public long Holder { get; } = holder;

    /// <summary>A PUBACK for <paramref name="sequence"/>: true when it was this session's; stores the new position when it advanced.</summary>
    public bool Acknowledge(ulong sequence)
    {
        if (!Release(sequence, out var position))
        {
            return false;
        }

        if (position > 0)
        {
            try
            {
                Log.Ack(Consumer, position);
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

    protected override int Stage(LoggedMessage row)
    {
        _staged.Add(row);
        return 0;
    }

    protected override async ValueTask FlushAsync(int count, CancellationToken stop)
    {
        foreach (var row in _staged)
        {
            await deliver(row, stop);
        }

        _staged.Clear();
    }

    protected override void Failed(Exception exception)
    {
        // A log closed under the pump means the agent is stopping.
        if (exception is not ObjectDisposedException)
        {
            failed?.Invoke(exception);
        }
    }
}
