using System.Buffers;
using DaemonEye.Protocol;
using DaemonEye.Protocol.V1;
using DaemonEye.Protocol.Wire;
using Google.Protobuf;

namespace DaemonEye.Client.Tests;

/// <summary>The shared wire codec (src/Abstractions/Protocol/Wire) against the generated code: the
/// agent's side of it (scan, Deliver frames). The SDK's side is in EncodingTests.</summary>
public sealed class WireCodecTests
{
    private static Publish SamplePublish(string topic = "events.process.lifecycle") => new()
    {
        Topic = topic,
        Payload = ByteString.CopyFromUtf8("pid=42"),
        ContentType = "text/plain; charset=utf-8",
        TimestampUnixNanos = 1_764_000_000_123_456_789,
        Correlation = new CorrelationMetadata
        {
            CorrelationId = "c-1",
            ParentCorrelationId = "p-0",
            RootCorrelationId = "r-0",
            SequenceNumber = 300,
            WorkflowStage = "scan",
            Tags = { ["host"] = "h1", ["collector"] = "procmond" },
        },
    };

    [Fact]
    public void Scan_slices_the_publish_and_topic_of_a_publish_envelope()
    {
        var publish = SamplePublish();
        var bytes = new Envelope { RequestId = 9, Publish = publish }.ToByteArray();

        Assert.Equal(PublishScan.Publish, PublishFrame.Scan(bytes, out var requestId, out var body, out var topic));
        Assert.Equal(9u, requestId);
        Assert.Equal(publish.ToByteArray(), bytes[body]);
        Assert.Equal("events.process.lifecycle"u8.ToArray(), bytes[topic]);
    }

    [Theory]
    [InlineData("subscribe")]
    [InlineData("ping")]
    [InlineData("empty")]
    [InlineData("unknown-field")]
    public void Scan_leaves_other_envelopes_to_the_generated_parser(string kind)
    {
        var envelope = kind switch
        {
            "subscribe" => new Envelope { Subscribe = new Subscribe { Pattern = "events.#" } },
            "ping" => new Envelope { Ping = new Ping { Nonce = 3 } },
            "empty" => new Envelope(),
            _ => new Envelope { Publish = SamplePublish() },
        };
        var bytes = envelope.ToByteArray();
        if (kind == "unknown-field")
        {
            bytes = [.. bytes, 0xF8, 0x01, 0x05]; // field 31, varint 5
        }

        Assert.Equal(PublishScan.NotPublish, PublishFrame.Scan(bytes, out _, out _, out _));
    }

    [Fact]
    public void Scan_never_accepts_what_the_generated_parser_rejects_and_agrees_on_what_both_accept()
    {
        var random = new Random(20261125);
        var valid = new Envelope { Publish = SamplePublish() }.ToByteArray();
        var accepted = 0;
        for (var round = 0; round < 20_000; round++)
        {
            var mutated = (byte[])valid.Clone();
            var edits = random.Next(1, 4);
            for (var e = 0; e < edits; e++)
            {
                switch (random.Next(3))
                {
                    case 0:
                        mutated[random.Next(mutated.Length)] = (byte)random.Next(256);
                        break;
                    case 1:
                        mutated = mutated[..random.Next(mutated.Length)];
                        break;
                    default:
                        mutated[random.Next(mutated.Length)] ^= (byte)(1 << random.Next(8));
                        break;
                }

                if (mutated.Length == 0)
                {
                    break;
                }
            }

            Envelope? parsed;
            try
            {
                parsed = Envelope.Parser.ParseFrom(mutated);
            }
            catch (InvalidProtocolBufferException)
            {
                parsed = null;
            }

            var scan = PublishFrame.Scan(mutated, out _, out var body, out var topic);
            if (scan != PublishScan.Publish)
            {
                continue;
            }

            accepted++;
            Assert.NotNull(parsed);
            Assert.Equal(Envelope.BodyOneofCase.Publish, parsed.BodyCase);
            Assert.Equal(parsed.Publish.Topic, System.Text.Encoding.UTF8.GetString(mutated[topic]));
            Assert.Equal(parsed.Publish, Publish.Parser.ParseFrom(mutated[body]));
        }

        Assert.True(accepted > 100, $"only {accepted} mutations were still publishes; the test lost its power");
    }

    [Fact]
    public void Scan_rejects_invalid_utf8_in_the_topic()
    {
        var publish = new Publish { Topic = "events.x" };
        var bytes = new Envelope { Publish = publish }.ToByteArray();
        var at = Array.IndexOf(bytes, (byte)'x');
        bytes[at] = 0xC3; // a lone lead byte

        Assert.Equal(PublishScan.Malformed, PublishFrame.Scan(bytes, out _, out _, out _));
    }

    [Theory]
    [InlineData(new uint[] { 1 }, 1UL)]
    [InlineData(new uint[] { 1, 2, 300, 70_000 }, 1UL << 40)]
    [InlineData(new uint[] { }, 0UL)]
    [InlineData(new uint[] { 5 }, 0UL)]
    public void Deliver_frame_is_byte_identical_to_the_generated_encoder(uint[] ids, ulong sequence)
    {
        var publish = SamplePublish();
        var expected = new Envelope { Deliver = new Deliver { Sequence = sequence, Message = publish, SubscriptionIds = { ids } } };
        var writer = new ArrayBufferWriter<byte>();

        DeliverFrame.Write(writer, ids, sequence, publish.ToByteArray());

        Assert.Equal(Framing.ToFrame(expected), writer.WrittenSpan.ToArray());
    }

    [Fact]
    public void A_publish_goes_from_the_encoder_through_scan_and_deliver_to_the_decoder_unchanged()
    {
        var fields = new PublishFields
        {
            Topic = "events.process.lifecycle"u8,
            Payload = "pid=42"u8,
            CorrelationId = "c-1"u8,
            RootIsCorrelationId = true,
            SequenceNumber = 7,
            TimestampUnixNanos = 1_764_000_000_123_456_789,
            RequestId = 3,
        };
        var size = PublishFrame.FrameSize(fields, out var c, out var p, out var e);
        var frame = new byte[size];
        Assert.Equal(size, PublishFrame.Write(frame, fields, c, p, e));
        var envelope = frame.AsSpan(Framing.HeaderSize);

        Assert.Equal(PublishScan.Publish, PublishFrame.Scan(envelope, out var requestId, out var publish, out var topic));
        Assert.Equal(3u, requestId);
        Assert.Equal("events.process.lifecycle"u8.ToArray(), envelope[topic].ToArray());

        var writer = new ArrayBufferWriter<byte>();
        DeliverFrame.Write(writer, [4, 300], 99, envelope[publish]);
        var ids = new List<uint>();
        Assert.Equal(DeliverDecode.Deliver, DeliverFrame.TryDecode(writer.WrittenSpan[Framing.HeaderSize..], ids, out var sequence, out var start, out var length));
        Assert.Equal([4u, 300u], ids);
        Assert.Equal(99UL, sequence);
        var delivered = writer.WrittenSpan.Slice(Framing.HeaderSize + start, length);
        Assert.Equal(envelope[publish].ToArray(), delivered.ToArray());

        Assert.True(PublishFrame.TryReadLayout(delivered, out var layout));
        Assert.Equal("pid=42"u8.ToArray(), delivered[layout.Payload].ToArray());
        Assert.Equal(1_764_000_000_123_456_789UL, layout.TimestampUnixNanos);
    }
}
