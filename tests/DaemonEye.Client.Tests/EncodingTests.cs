using System.Text;
using DaemonEye.Protocol;
using DaemonEye.Protocol.V1;
using DaemonEye.Protocol.Wire;
using Google.Protobuf;

namespace DaemonEye.Client.Tests;

public sealed class EncodingTests
{
    private static byte[] Encode(in PublishFields fields)
    {
        var size = PublishFrame.FrameSize(fields, out var c, out var p, out var e);
        var buffer = new byte[size];
        Assert.Equal(size, PublishFrame.Write(buffer, fields, c, p, e));
        return buffer;
    }

    private static Envelope Parse(byte[] frame)
    {
        var sequence = new System.Buffers.ReadOnlySequence<byte>(frame);
        Assert.Equal(FrameStatus.Complete, Framing.TryReadFrame(ref sequence, Framing.DefaultMaxFrameSize, out var body, out _));
        Assert.Equal(0, sequence.Length);
        return Envelope.Parser.ParseFrom(body);
    }

    [Fact]
    public void Publish_frame_is_byte_for_byte_what_the_generated_encoder_writes()
    {
        var frame = Encode(new PublishFields
        {
            Topic = "events.process.lifecycle"u8,
            Payload = "hello"u8,
            CorrelationId = "abc"u8,
            ParentCorrelationId = "parent-1",
            RootCorrelationId = "root-0",
            SequenceNumber = 300,
            WorkflowStage = "scan",
            TimestampUnixNanos = 1_700_000_000_123_456_789,
            ContentType = "text/plain; charset=utf-8",
            RequestId = 77,
        });

        var expected = new Envelope
        {
            RequestId = 77,
            Publish = new Publish
            {
                Topic = "events.process.lifecycle",
                Payload = ByteString.CopyFromUtf8("hello"),
                Correlation = new CorrelationMetadata { CorrelationId = "abc", ParentCorrelationId = "parent-1", RootCorrelationId = "root-0", SequenceNumber = 300, WorkflowStage = "scan" },
                TimestampUnixNanos = 1_700_000_000_123_456_789,
                ContentType = "text/plain; charset=utf-8",
            },
        };
        Assert.Equal(Framing.ToFrame(expected), frame);
        Assert.Equal(expected, Parse(frame));
    }

    [Fact]
    public void Root_can_be_the_correlation_id_itself()
    {
        var frame = Encode(new PublishFields { Topic = "events.a"u8, CorrelationId = "id-1"u8, RootIsCorrelationId = true, SequenceNumber = 1 });
        var publish = Parse(frame).Publish;
        Assert.Equal("id-1", publish.Correlation.CorrelationId);
        Assert.Equal("id-1", publish.Correlation.RootCorrelationId);
        Assert.Equal(1UL, publish.Correlation.SequenceNumber);
    }

    [Fact]
    public void Minimal_publish_round_trips()
    {
        var frame = Encode(new PublishFields { Topic = "control.health.heartbeat"u8 });
        var expected = new Envelope { Publish = new Publish { Topic = "control.health.heartbeat" } };
        Assert.Equal(Framing.ToFrame(expected), frame);
    }

    [Fact]
    public void Tags_and_non_ascii_strings_round_trip()
    {
        var tags = new Dictionary<string, string> { ["host"] = "web-1", ["empty"] = "", ["ünï"] = "çødé" };
        var payload = new byte[300];
        Random.Shared.NextBytes(payload);
        var frame = Encode(new PublishFields { Topic = "events.a.b"u8, Payload = payload, CorrelationId = "x"u8, Tags = tags, WorkflowStage = "日本" });
        var publish = Parse(frame).Publish;
        Assert.Equal(payload, publish.Payload.ToByteArray());
        Assert.Equal("日本", publish.Correlation.WorkflowStage);
        Assert.Equal(tags, publish.Correlation.Tags.ToDictionary());
    }

    [Fact]
    public void Deliver_decoder_reads_what_the_generated_encoder_writes()
    {
        var publish = new Publish
        {
            Topic = "events.process.tree",
            Payload = ByteString.CopyFrom(1, 2, 3),
            Correlation = new CorrelationMetadata { CorrelationId = "c1", RootCorrelationId = "c1", SequenceNumber = 9, Tags = { ["k"] = "v" } },
            TimestampUnixNanos = 42,
            ContentType = "application/octet-stream",
        };
        var envelope = new Envelope { RequestId = 5, Deliver = new Deliver { SubscriptionIds = { 3, 700, 1 }, Sequence = 123456789, Message = publish } };
        var bytes = envelope.ToByteArray();
        var ids = new List<uint>();
        Assert.Equal(DeliverDecode.Deliver, DeliverFrame.TryDecode(bytes, ids, out var sequence, out var start, out var length));
        Assert.Equal([3u, 700u, 1u], ids);
        Assert.Equal(123456789UL, sequence);
        var copy = bytes.AsSpan(start, length).ToArray();
        Assert.Equal(publish.ToByteArray(), copy);

        Assert.True(PublishFrame.TryReadLayout(copy, out var layout));
        var message = new BusMessage("events.process.tree", sequence, copy, layout);
        Assert.Equal(new byte[] { 1, 2, 3 }, message.Payload.ToArray());
        Assert.Equal(42UL, message.TimestampUnixNanos);
        Assert.Equal("application/octet-stream", message.ContentType);
        Assert.Equal(publish.Correlation, message.Correlation);
        Assert.Equal(publish, message.ToPublish());
        Assert.Equal("events.process.tree", Encoding.UTF8.GetString(copy.AsSpan(layout.Topic)));
    }

    [Fact]
    public void Other_bodies_and_garbage_are_told_apart()
    {
        var ids = new List<uint>();
        var pong = new Envelope { RequestId = 1, Pong = new Pong { Nonce = 1 } }.ToByteArray();
        Assert.Equal(DeliverDecode.Other, DeliverFrame.TryDecode(pong, ids, out _, out _, out _));

        var deliver = new Envelope { Deliver = new Deliver { SubscriptionIds = { 1 }, Sequence = 1, Message = new Publish { Topic = "events.a" } } }.ToByteArray();
        Assert.Equal(DeliverDecode.Malformed, DeliverFrame.TryDecode(deliver.AsSpan(0, deliver.Length - 2), ids, out _, out _, out _));
        Assert.Equal(DeliverDecode.Malformed, DeliverFrame.TryDecode([0x1A, 0xFF], ids, out _, out _, out _));
    }

    [Fact]
    public void Correlation_ids_are_32_lowercase_hex_characters()
    {
        Span<byte> buffer = stackalloc byte[64];
        var n = BusClient.FormatCorrelationId(buffer, 0xDEADBEEF, 1);
        Assert.Equal("00000000deadbeef0000000000000001", Encoding.ASCII.GetString(buffer[..n]));
    }
}
