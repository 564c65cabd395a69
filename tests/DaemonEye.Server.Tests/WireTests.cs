using System.Buffers;
using DaemonEye.Gateway;
using DaemonEye.Protocol.V1;
using Google.Protobuf;

namespace DaemonEye.Server.Tests;

public sealed class WireTests
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

        Assert.Equal(ScanResult.Publish, Wire.ScanPublish(bytes, out var requestId, out var body, out var topic));
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

        Assert.Equal(ScanResult.NotPublish, Wire.ScanPublish(bytes, out _, out _, out _));
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

            var scan = Wire.ScanPublish(mutated, out _, out var body, out var topic);
            if (scan != ScanResult.Publish)
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

        Assert.Equal(ScanResult.Malformed, Wire.ScanPublish(bytes, out _, out _, out _));
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

        Wire.WriteDeliverFrame(writer, ids, sequence, publish.ToByteArray());

        Assert.Equal(Protocol.Framing.ToFrame(expected), writer.WrittenSpan.ToArray());
    }
}
