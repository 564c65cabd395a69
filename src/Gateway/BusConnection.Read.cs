using DaemonEye.Protocol.Wire;
using System.Buffers;
using DaemonEye.Gateway.Security;
using DaemonEye.Protocol;
using DaemonEye.Protocol.V1;
using Google.Protobuf;
using ErrorCode = DaemonEye.Protocol.V1.ErrorCode;

namespace DaemonEye.Gateway;

/// <summary>The read side: frames cut from each socket read, handled in order; publishes grouped per read.</summary>
internal sealed partial class BusConnection
{
    private async Task ReadLoopAsync(CancellationToken cancellationToken)
    {
        var completedFrames = false; // the last read completed at least one frame
        while (true)
        {
            // The timeouts run while the loop waits on the peer (see ReadDeadlines); the sweeper cuts the wait.
            if (_deadlines.BeginWait(completedFrames, partialFrame: _partialBytes > 0) is var due and not ConnectionTimeout.None)
            {
                TimeOut(due);
                return;
            }

            var result = await _input.ReadAsync(cancellationToken);
            if (!_deadlines.EndWait())
            {
                TimeOut(_deadlines.CutFor);
                return;
            }

            _publishes.ReadTimestamp = System.Diagnostics.Stopwatch.GetTimestamp();
            var buffer = result.Buffer;
            var stop = false;
            completedFrames = false;
            while (!stop)
            {
                var status = Framing.TryReadFrame(ref buffer, _maxFrameSize, out var frame, out var declared);
                if (status == FrameStatus.Incomplete)
                {
                    break;
                }

                completedFrames = true;

                if (status == FrameStatus.TooLarge)
                {
                    await FlushPublishesAsync();
                    _stats.AddLimitRefusal(Limit.MaxFrameSize);
                    Fatal(ErrorCode.FrameTooLarge, $"frame length prefix is {declared} bytes; the maximum frame size is {_maxFrameSize} bytes (broker.max_frame_size)");
                    stop = true;
                    break;
                }

                var control = HandleFrame(frame, out var fatal);
                if (fatal)
                {
                    await FlushPublishesAsync();
                    stop = true;
                }
                else if (control is not null)
                {
                    await FlushPublishesAsync();
                    if (control.BodyCase is Envelope.BodyOneofCase.RpcRequest or Envelope.BodyOneofCase.RpcResponse)
                    {
                        HandleRpc(control);
                    }
                    else
                    {
                        SendCorked();
                        await HandleControlAsync(control);
                    }
                }
            }

            // Every RPC frame this read routed leaves now: one send per destination.
            SendCorked();
            if (!stop)
            {
                await FlushPublishesAsync();
            }

            if (!stop && result.IsCompleted && buffer.Length > 0)
            {
                var expected = Framing.TryReadFrame(ref buffer, int.MaxValue, out _, out var declared) == FrameStatus.Incomplete && buffer.Length >= Framing.HeaderSize
                    ? $"{declared} bytes of frame body after its 4-byte length prefix"
                    : "a 4-byte length prefix";
                Fatal(ErrorCode.TruncatedFrame, $"the connection ended in the middle of a frame: {buffer.Length} bytes left over, expected {expected}");
                stop = true;
            }

            _partialBytes = buffer.Length;
            _input.AdvanceTo(buffer.Start, buffer.End);
            if (stop || result.IsCompleted)
            {
                return;
            }
        }
    }

    /// <summary>
    /// Handles one frame synchronously. Publishes are accumulated; frames that need the registry
    /// or a barrier are returned for <see cref="HandleControlAsync"/>.
    /// </summary>
    private Envelope? HandleFrame(ReadOnlySequence<byte> frame, out bool fatal)
    {
        fatal = false;
        byte[]? rented = null;
        var span = frame.IsSingleSegment ? frame.FirstSpan : CopyToRented(frame, out rented);
        try
        {
            if (_welcomed)
            {
                switch (PublishFrame.Scan(span, out var requestId, out var publish, out var topic))
                {
                    case PublishScan.Publish:
                        Accept(span[topic], span[publish], requestId);
                        return null;
                    case PublishScan.Malformed:
                        fatal = true;
                        Fatal(ErrorCode.MalformedFrame, $"a frame of {span.Length} bytes is not a valid Envelope (protobuf wire-format error)");
                        return null;
                }
            }

            Envelope envelope;
            try
            {
                envelope = Envelope.Parser.ParseFrom(span);
            }
            catch (InvalidProtocolBufferException ex)
            {
                fatal = true;
                Fatal(ErrorCode.MalformedFrame, $"a frame of {span.Length} bytes is not a valid Envelope: {ex.Message}");
                return null;
            }

            if (!_welcomed)
            {
                fatal = !Handshake(envelope);
                return null;
            }

            switch (envelope.BodyCase)
            {
                case Envelope.BodyOneofCase.Publish:
                    // A Publish envelope with extra fields: re-encode the Publish on its own.
                    var bytes = envelope.Publish.ToByteArray();
                    Accept(System.Text.Encoding.UTF8.GetBytes(envelope.Publish.Topic), bytes, envelope.RequestId);
                    return null;
                case Envelope.BodyOneofCase.Subscribe:
                case Envelope.BodyOneofCase.Unsubscribe:
                case Envelope.BodyOneofCase.Ping:
                case Envelope.BodyOneofCase.RpcRequest:
                case Envelope.BodyOneofCase.RpcResponse:
                case Envelope.BodyOneofCase.DurableAck:
                case Envelope.BodyOneofCase.StreamsRequest:
                    return envelope;
                case Envelope.BodyOneofCase.Pong:
                    return null;
                case Envelope.BodyOneofCase.None:
                    fatal = true;
                    Fatal(ErrorCode.MalformedFrame, "the envelope has no body; expected one of publish, subscribe, unsubscribe, ping, pong", envelope.RequestId);
                    return null;
                default:
                    fatal = true;
                    Fatal(ErrorCode.UnexpectedMessage, $"a client may not send {envelope.BodyCase}; allowed after the handshake: publish, subscribe, unsubscribe, ping, pong, rpc_request, rpc_response, durable_ack, streams_request", envelope.RequestId);
                    return null;
            }
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    private static ReadOnlySpan<byte> CopyToRented(ReadOnlySequence<byte> frame, out byte[] rented)
    {
        rented = ArrayPool<byte>.Shared.Rent((int)frame.Length);
        frame.CopyTo(rented);
        return rented.AsSpan(0, (int)frame.Length);
    }

    private async Task HandleControlAsync(Envelope envelope)
    {
        switch (envelope.BodyCase)
        {
            case Envelope.BodyOneofCase.Subscribe:
                await SubscribeAsync(envelope.RequestId, envelope.Subscribe);
                break;
            case Envelope.BodyOneofCase.Unsubscribe:
                await UnsubscribeAsync(envelope.RequestId, envelope.Unsubscribe.SubscriptionId);
                break;
            case Envelope.BodyOneofCase.Ping:
                // Every earlier frame has been routed (publishes were flushed first): a barrier.
                QueueControl(Framing.ToFrame(new Envelope { RequestId = envelope.RequestId, Pong = new Pong { Nonce = envelope.Ping.Nonce } }));
                break;
            case Envelope.BodyOneofCase.DurableAck:
                AcknowledgeDurable(envelope.RequestId, envelope.DurableAck);
                break;
            case Envelope.BodyOneofCase.StreamsRequest:
                ReplyStreams(envelope.RequestId);
                break;
        }
    }
}
