using System.Buffers;
using System.Net.Sockets;
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

    /// <summary>
    /// Called by Topic grains (any thread): takes as many messages as the outbound buffer has room
    /// for and drops the rest, counted. Never blocks. Returns -1 once the connection is closed.
    /// </summary>
    public int Offer(DeliveryTarget target, PublishBatch batch, ulong firstSequence)
    {
        if (_closed)
        {
            return -1;
        }

        var count = batch.Count;
        var accepted = Reserve(count);
        if (accepted > 0)
        {
            _outbound.Writer.TryWrite(Outbound.Delivery(batch, target.SubscriptionIds, firstSequence, accepted));
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

    private int Reserve(int wanted)
    {
        while (true)
        {
            var queued = Volatile.Read(ref _queued);
            var free = _capacity - queued;
            if (free <= 0)
            {
                return 0;
            }

            var take = Math.Min(free, wanted);
            if (Interlocked.CompareExchange(ref _queued, queued + take, queued) == queued)
            {
                return take;
            }
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
        if (_writerIdle && !_closed && !_outbound.Reader.TryPeek(out _))
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
            _unsent = rest;
            _outbound.Writer.TryWrite(Outbound.Control(ReadOnlyMemory<byte>.Empty));
        }
        else
        {
            _outbound.Writer.TryWrite(Outbound.Control(rest));
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
        var active = new HashSet<uint>();
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
                    Write(item, active);
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

    private void Write(in Outbound item, HashSet<uint> active)
    {
        switch (item.Kind)
        {
            case OutboundKind.Control:
                _output.Write(item.Frame.Span);
                break;
            case OutboundKind.Activate:
                active.Add(item.SubscriptionId);
                _output.Write(item.Frame.Span);
                break;
            case OutboundKind.Deactivate:
                active.Remove(item.SubscriptionId);
                _output.Write(item.Frame.Span);
                break;
            case OutboundKind.DropMarker:
                WriteDropped();
                break;
            case OutboundKind.Delivery:
                WriteDropped();
                Interlocked.Add(ref _queued, -item.Count);
                WriteDelivery(item, active);
                break;
        }
    }

    private void WriteDelivery(in Outbound item, HashSet<uint> active)
    {
        // Deliveries queued before a SubscribeAck (the message was published before the
        // subscription took effect) or after an UnsubscribeAck are skipped for that subscription.
        ReadOnlySpan<uint> ids = item.Ids;
        var allActive = true;
        foreach (var id in ids)
        {
            if (!active.Contains(id))
            {
                allActive = false;
                break;
            }
        }

        if (!allActive)
        {
            ids = ids.ToArray().Where(active.Contains).ToArray();
            if (ids.IsEmpty)
            {
                return;
            }
        }

        var batch = item.Batch!;
        for (var i = 0; i < item.Count; i++)
        {
            Wire.WriteDeliverFrame(_output, ids, item.FirstSequence + (ulong)i, batch.Message(i).Span);
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
