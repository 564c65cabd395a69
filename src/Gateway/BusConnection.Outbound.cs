using DaemonEye.Protocol.Wire;
using System.Buffers;
using System.Net.Sockets;
using DaemonEye.Gateway.Security;
using DaemonEye.Grains;
using DaemonEye.Protocol;
using DaemonEye.Protocol.V1;

namespace DaemonEye.Gateway;

/// <summary>The write side: the bounded outbound queue, deliveries offered by Topic grains, the direct-send path and the write loop.</summary>
internal sealed partial class BusConnection
{
    // The direct send path. The writer loop marks itself idle (under the gate) only once the queue is
    // empty and every byte it wrote is flushed; while it is idle a router may send a frame on the
    // socket itself. The writer takes the gate before it writes again, so bytes never interleave; a
    // frame the kernel took only part of leaves its rest here, which the writer sends first.
    private readonly Lock _sendGate = new();
    private bool _writerIdle;
    private ReadOnlyMemory<byte> _unsent;

    // Subscriptions whose SubscribeAck has been queued or sent (and whose UnsubscribeAck has not),
    // guarded by _sendGate: a delivery is written only for these, so a client never sees a
    // subscription id before its ack, nor after its UnsubscribeAck.
    private readonly HashSet<uint> _acked = [];

    // The delivery frames of one offer, encoded on the offering thread for a direct send.
    [ThreadStatic]
    private static ArrayBufferWriter<byte>? t_deliveries;

    /// <summary>
    /// Called by topic routes on the publishing connection's thread (or the agent's own publishers):
    /// with the writer idle, the Deliver frames go straight to the socket from this thread (no queue,
    /// no writer wake-up); otherwise as many messages as the outbound buffer has room for (messages
    /// and bytes) are queued and the rest dropped, counted. Never blocks. Returns -1 once closed.
    /// </summary>
    public int Offer(DeliveryTarget target, PublishBatch batch, ulong firstSequence)
    {
        if (_closed)
        {
            return -1;
        }

        var count = batch.Count;
        lock (_sendGate)
        {
            var ids = AckedOf(target.SubscriptionIds);
            if (ids.Length == 0)
            {
                // Published before the subscription's ack was queued (or after its UnsubscribeAck): not for this client.
                return count;
            }

            if (CanSendDirectly)
            {
                var frames = t_deliveries ??= new ArrayBufferWriter<byte>(64 * 1024);
                for (var i = 0; i < count; i++)
                {
                    DeliverFrame.Write(frames, ids, firstSequence + (ulong)i, batch.Message(i).Span);
                }

                SendLocked(frames.WrittenMemory, stable: false);
                frames.ResetWrittenCount();
                if (frames.Capacity > MaxIdleCork)
                {
                    t_deliveries = null;
                }

                _stats.AddDelivered(count);
                _delivery.Written(batch, count);
                _delivery.Flushed();
                return count;
            }

            var accepted = Reserve(batch, count, out var bytes);
            if (accepted > 0)
            {
                _outbound.Writer.TryWrite(Outbound.Delivery(batch.Stable(), ids, firstSequence, accepted, bytes));
            }

            if (accepted < count)
            {
                var dropped = count - accepted;
                Interlocked.Add(ref _dropsTotal, dropped);
                _stats.AddDropped(dropped);
                if (Interlocked.Add(ref _dropsPending, dropped) == dropped)
                {
                    // First drop since the last notice: wake the writer even if nothing else is queued.
                    _outbound.Writer.TryWrite(Outbound.DropMarker());
                }
            }

            return accepted;
        }
    }

    /// <summary>Under _sendGate: the writer is parked with nothing queued or left over, so this thread may write.</summary>
    private bool CanSendDirectly => _writerIdle && !_closed && _unsent.IsEmpty && !_outbound.Reader.TryPeek(out _);

    /// <summary>Under _sendGate: the ids of <paramref name="ids"/> that are acked (the same array when all are).</summary>
    private uint[] AckedOf(uint[] ids)
    {
        foreach (var id in ids)
        {
            if (!_acked.Contains(id))
            {
                return [.. ids.Where(_acked.Contains)];
            }
        }

        return ids;
    }

    /// <summary>Queues a SubscribeAck (<paramref name="active"/>) or UnsubscribeAck and, in the same step, starts or stops deliveries for the id.</summary>
    private void QueueAck(uint subscriptionId, byte[] ack, bool active)
    {
        lock (_sendGate)
        {
            QueueControl(ack);
            if (active)
            {
                _acked.Add(subscriptionId);
            }
            else
            {
                _acked.Remove(subscriptionId);
            }
        }
    }

    /// <summary>Bytes a queued delivery of the first <paramref name="count"/> messages occupies (frame overhead included).</summary>
    private static int DeliveryBytes(PublishBatch batch, int count) => batch.Ends[count - 1] + (count * DeliveryOverhead);

    // Length prefix, envelope and Deliver tags and lengths, one id, a sequence: an upper bound for the common case.
    private const int DeliveryOverhead = 32;

    /// <summary>How many of the batch's messages fit in the outbound buffer (messages and bytes); reserves them and their <paramref name="bytes"/>.</summary>
    private int Reserve(PublishBatch batch, int wanted, out int bytes)
    {
        bytes = 0;
        var free = _capacity - Volatile.Read(ref _queued);
        var take = Math.Min(free, wanted);
        var room = _maxOutboundBytes - Interlocked.Read(ref _queuedBytes);
        while (take > 0 && DeliveryBytes(batch, take) > room)
        {
            take--;
        }

        if (take <= 0)
        {
            return 0;
        }

        bytes = DeliveryBytes(batch, take);
        RaisePeak(ref _peakQueued, Interlocked.Add(ref _queued, take));
        RaisePeak(ref _peakQueuedBytes, Interlocked.Add(ref _queuedBytes, bytes));
        return take;
    }

    private static void RaisePeak(ref int peak, int now)
    {
        var seen = Volatile.Read(ref peak);
        while (now > seen && Interlocked.CompareExchange(ref peak, now, seen) is var was && was != seen)
        {
            seen = was;
        }
    }

    private static void RaisePeak(ref long peak, long now)
    {
        var seen = Interlocked.Read(ref peak);
        while (now > seen && Interlocked.CompareExchange(ref peak, now, seen) is var was && was != seen)
        {
            seen = was;
        }
    }

    /// <summary>
    /// Sends whole frames on the calling thread when the writer is idle: a call then crosses the agent
    /// without waking the writer loop (two thread hand-offs fewer per hop). Never blocks: a full socket
    /// buffer takes part of the bytes or none, and the writer sends the rest. With the writer busy,
    /// the frames join its queue. <paramref name="stable"/>: the caller will not reuse the memory.
    /// </summary>
    private void SendLocked(ReadOnlyMemory<byte> frames, bool stable)
    {
        var sent = 0;
        if (CanSendDirectly)
        {
            // 0: the socket buffer is full; -1: the socket failed, which the writer will meet and report.
            sent = Math.Max(0, _io.TrySend(frames.Span));
        }

        if (sent == frames.Length)
        {
            return;
        }

        var rest = frames[sent..];
        rest = stable ? rest : rest.ToArray();
        if (sent > 0)
        {
            // Part of a frame went: its rest goes before anything else the writer writes; the marker wakes it.
            RaisePeak(ref _peakQueuedBytes, Interlocked.Add(ref _queuedBytes, rest.Length));
            _unsent = rest;
            _outbound.Writer.TryWrite(Outbound.Control(ReadOnlyMemory<byte>.Empty));
        }
        else
        {
            QueueControl(rest);
        }
    }

    /// <summary>
    /// Queues a frame the client must receive (Welcome, an ack, an Error, a Pong, an RPC frame). It
    /// counts against broker.max_outbound_bytes like queued deliveries; a client so far behind that
    /// it would exceed it is not reading, and is cut off (counted, logged) instead of growing the agent.
    /// </summary>
    private void QueueControl(ReadOnlyMemory<byte> frame)
    {
        var queued = Interlocked.Add(ref _queuedBytes, frame.Length);
        if (queued > _maxOutboundBytes)
        {
            Interlocked.Add(ref _queuedBytes, -frame.Length);
            CutSlowReader(frame.Length);
            return;
        }

        RaisePeak(ref _peakQueuedBytes, queued);

        _outbound.Writer.TryWrite(Outbound.Control(frame));
    }

    /// <summary>Ends a connection that does not read what it is sent (its outbound bytes would pass the budget).</summary>
    private void CutSlowReader(int frameBytes)
    {
        if (Interlocked.Exchange(ref _slowReaderCut, 1) != 0)
        {
            return;
        }

        _closed = true;
        _stats.AddLimitRefusal(Limit.MaxOutboundBytes);
        LogSlowReaderCut(_logger, Id, _clientId, Interlocked.Read(ref _queuedBytes), frameBytes, _maxOutboundBytes);
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Already gone.
        }
    }

    /// <summary>The writer loop wakes: it owns the socket again, and first sends what the direct path left.</summary>
    private void ResumeWriting()
    {
        lock (_sendGate)
        {
            _writerIdle = false;
            if (!_unsent.IsEmpty)
            {
                _output.Write(_unsent.Span);
                Interlocked.Add(ref _queuedBytes, -_unsent.Length);
                _unsent = default;
            }
        }
    }

    /// <summary>True when the writer may park: nothing queued, and (the caller has flushed) nothing buffered.</summary>
    private bool TryPark()
    {
        lock (_sendGate)
        {
            _writerIdle = !_outbound.Reader.TryPeek(out _);
            return _writerIdle;
        }
    }

    private async Task WriteLoopAsync()
    {
        var reader = _outbound.Reader;
        try
        {
            while (true)
            {
                if (TryPark())
                {
                    if (!await reader.WaitToReadAsync())
                    {
                        return;
                    }

                    ResumeWriting();
                }

                while (reader.TryRead(out var item))
                {
                    Write(item);
                    if (_output.UnflushedBytes >= FlushThreshold)
                    {
                        var flushed = await _output.FlushAsync();
                        _delivery.Flushed();
                        if (flushed.IsCompleted)
                        {
                            return;
                        }
                    }
                }

                var done = (await _output.FlushAsync()).IsCompleted;
                _delivery.Flushed();
                if (done)
                {
                    return;
                }
            }
        }
        catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException or InvalidOperationException)
        {
            // The peer went away; the read loop sees the end of the stream and closes.
            _closed = true;
        }
        catch (Exception ex)
        {
            // A fault of ours, not the peer's: say so, and end the connection rather than leave it mute.
            _closed = true;
            LogConnectionFailed(_logger, Id, _clientId, ex);
            try
            {
                _socket.Shutdown(SocketShutdown.Both);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                // Already gone.
            }
        }
        finally
        {
            await _output.CompleteAsync();
        }
    }

    private void Write(in Outbound item)
    {
        switch (item.Kind)
        {
            case OutboundKind.Control:
                _output.Write(item.Frame.Span);
                break;
            case OutboundKind.DropMarker:
                WriteDropped();
                break;
            case OutboundKind.Delivery:
                WriteDropped();
                Interlocked.Add(ref _queued, -item.Count);
                WriteDelivery(item);
                break;
        }

        Interlocked.Add(ref _queuedBytes, -item.Bytes);
    }

    private void WriteDelivery(in Outbound item)
    {
        var batch = item.Batch!;
        for (var i = 0; i < item.Count; i++)
        {
            DeliverFrame.Write(_output, item.Ids, item.FirstSequence + (ulong)i, batch.Message(i).Span);
        }

        _stats.AddDelivered(item.Count);
        _delivery.Written(batch, item.Count);
    }

    private void WriteDropped()
    {
        var count = Interlocked.Exchange(ref _dropsPending, 0);
        if (count == 0)
        {
            return;
        }

        _dropsReported += (ulong)count;
        Framing.Write(_output, new Envelope
        {
            Dropped = new Dropped
            {
                Count = (ulong)count,
                Total = _dropsReported,
                Reason = $"outbound buffer full (broker.message_buffer_size = {_capacity} messages); the subscriber is reading too slowly",
            },
        });
    }
}
