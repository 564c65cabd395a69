using System.Buffers;
using System.Buffers.Binary;
using DaemonEye.Protocol;
using DaemonEye.Protocol.V1;
using Google.Protobuf;

namespace DaemonEye.Tests.Protocol;

public sealed class FramingTests
{
    private static Envelope Sample(int payloadBytes = 32) => new()
    {
        RequestId = 42,
        Publish = new Publish
        {
            Topic = "events.process.lifecycle",
            Payload = ByteString.CopyFrom([.. Enumerable.Range(0, payloadBytes).Select(i => (byte)i)]),
            ContentType = "application/octet-stream",
            TimestampUnixNanos = 1_700_000_000_000_000_000,
            Correlation = new CorrelationMetadata { CorrelationId = "c-1", RootCorrelationId = "c-1", SequenceNumber = 3 },
        },
    };

    [Fact]
    public void A_complete_frame_is_taken_off_the_front()
    {
        var envelope = Sample();
        var bytes = Framing.ToFrame(envelope);
        var buffer = new ReadOnlySequence<byte>(bytes);

        var status = Framing.TryReadFrame(ref buffer, Framing.DefaultMaxFrameSize, out var frame, out var declared);

        Assert.Equal(FrameStatus.Complete, status);
        Assert.Equal(envelope.CalculateSize(), declared);
        Assert.Equal(declared, frame.Length);
        Assert.True(buffer.IsEmpty);
        Assert.Equal(envelope, Envelope.Parser.ParseFrom(frame));
    }

    [Fact]
    public void The_header_is_the_big_endian_body_length()
    {
        var envelope = Sample(300);
        var bytes = Framing.ToFrame(envelope);

        Assert.Equal((uint)envelope.CalculateSize(), BinaryPrimitives.ReadUInt32BigEndian(bytes));
        Assert.Equal(Framing.HeaderSize + envelope.CalculateSize(), bytes.Length);
        Assert.Equal(0, bytes[0]);
        Assert.True(bytes[2] > 0); // > 255 bytes: the length spills into the third byte
    }

    [Fact]
    public void Two_frames_in_one_buffer_are_read_one_after_the_other()
    {
        var first = Sample(8);
        var second = new Envelope { RequestId = 9, Ping = new Ping() };
        var buffer = new ReadOnlySequence<byte>([.. Framing.ToFrame(first), .. Framing.ToFrame(second)]);

        Assert.Equal(FrameStatus.Complete, Framing.TryReadFrame(ref buffer, Framing.DefaultMaxFrameSize, out var a, out _));
        Assert.Equal(FrameStatus.Complete, Framing.TryReadFrame(ref buffer, Framing.DefaultMaxFrameSize, out var b, out _));
        Assert.Equal(FrameStatus.Incomplete, Framing.TryReadFrame(ref buffer, Framing.DefaultMaxFrameSize, out _, out _));

        Assert.Equal(first, Envelope.Parser.ParseFrom(a));
        Assert.Equal(second, Envelope.Parser.ParseFrom(b));
        Assert.True(buffer.IsEmpty);
    }

    [Fact]
    public void An_empty_envelope_is_a_frame_of_length_zero()
    {
        var bytes = Framing.ToFrame(new Envelope());
        var buffer = new ReadOnlySequence<byte>(bytes);

        Assert.Equal(FrameStatus.Complete, Framing.TryReadFrame(ref buffer, Framing.DefaultMaxFrameSize, out var frame, out var declared));
        Assert.Equal(0, declared);
        Assert.True(frame.IsEmpty);
        Assert.True(buffer.IsEmpty);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void An_incomplete_header_needs_more_bytes_and_leaves_the_buffer(int length)
    {
        var bytes = Framing.ToFrame(Sample());
        var buffer = new ReadOnlySequence<byte>(bytes, 0, length);
        var before = buffer;

        var status = Framing.TryReadFrame(ref buffer, Framing.DefaultMaxFrameSize, out var frame, out _);

        Assert.Equal(FrameStatus.Incomplete, status);
        Assert.Equal(before, buffer);
        Assert.True(frame.IsEmpty);
    }

    [Fact]
    public void An_incomplete_body_needs_more_bytes_and_leaves_the_buffer()
    {
        var bytes = Framing.ToFrame(Sample());
        for (var length = Framing.HeaderSize; length < bytes.Length; length++)
        {
            var buffer = new ReadOnlySequence<byte>(bytes, 0, length);
            var before = buffer;

            var status = Framing.TryReadFrame(ref buffer, Framing.DefaultMaxFrameSize, out _, out var declared);

            Assert.Equal(FrameStatus.Incomplete, status);
            Assert.Equal(before, buffer);
            Assert.Equal(bytes.Length - Framing.HeaderSize, declared);
        }
    }

    [Fact]
    public void A_frame_of_exactly_the_maximum_size_is_accepted()
    {
        const int max = 1000;
        var bytes = new byte[Framing.HeaderSize + max];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, max);
        var buffer = new ReadOnlySequence<byte>(bytes);

        Assert.Equal(FrameStatus.Complete, Framing.TryReadFrame(ref buffer, max, out var frame, out var declared));
        Assert.Equal(max, declared);
        Assert.Equal(max, frame.Length);
    }

    [Theory]
    [InlineData(1001u)]
    [InlineData(uint.MaxValue)]
    [InlineData((uint)int.MaxValue + 1)]
    public void A_frame_over_the_maximum_is_too_large_before_its_body_arrives(uint length)
    {
        const int max = 1000;
        var header = new byte[Framing.HeaderSize];
        BinaryPrimitives.WriteUInt32BigEndian(header, length);
        var buffer = new ReadOnlySequence<byte>(header); // the body has not arrived
        var before = buffer;

        var status = Framing.TryReadFrame(ref buffer, max, out var frame, out var declared);

        Assert.Equal(FrameStatus.TooLarge, status);
        Assert.Equal(length, declared);
        Assert.True(frame.IsEmpty);
        Assert.Equal(before, buffer);
    }

    [Fact]
    public void A_frame_split_at_every_byte_across_two_segments_is_read()
    {
        var envelope = Sample();
        var bytes = Framing.ToFrame(envelope);
        for (var split = 1; split < bytes.Length; split++)
        {
            var buffer = Segments(bytes[..split], bytes[split..]);

            Assert.Equal(FrameStatus.Complete, Framing.TryReadFrame(ref buffer, Framing.DefaultMaxFrameSize, out var frame, out _));
            Assert.Equal(envelope, Envelope.Parser.ParseFrom(frame));
            Assert.True(buffer.IsEmpty);
        }
    }

    [Fact]
    public void A_frame_in_one_byte_segments_is_read_and_the_rest_is_kept()
    {
        var envelope = Sample();
        var next = Framing.ToFrame(new Envelope { Ping = new Ping() });
        byte[] bytes = [.. Framing.ToFrame(envelope), .. next[..3]];
        var buffer = Segments([.. bytes.Select(b => new[] { b })]);

        Assert.Equal(FrameStatus.Complete, Framing.TryReadFrame(ref buffer, Framing.DefaultMaxFrameSize, out var frame, out _));
        Assert.Equal(envelope, Envelope.Parser.ParseFrom(frame));
        Assert.Equal(3, buffer.Length);
        Assert.Equal(FrameStatus.Incomplete, Framing.TryReadFrame(ref buffer, Framing.DefaultMaxFrameSize, out _, out _));
        Assert.Equal(3, buffer.Length);
    }

    [Fact]
    public void A_too_large_header_split_across_segments_is_reported()
    {
        var header = new byte[Framing.HeaderSize];
        BinaryPrimitives.WriteUInt32BigEndian(header, 5000);
        var buffer = Segments(header[..1], header[1..3], header[3..]);

        Assert.Equal(FrameStatus.TooLarge, Framing.TryReadFrame(ref buffer, 4999, out _, out var declared));
        Assert.Equal(5000, declared);
    }

    [Fact]
    public void The_span_cut_agrees_with_the_sequence_cut_on_every_prefix()
    {
        // Two frames, then a header declaring more than the maximum: every prefix of that stream
        // gets the same status, length and declared length from both overloads.
        var stream = Framing.ToFrame(Sample(10)).Concat(Framing.ToFrame(Sample(0))).Concat(new byte[] { 0, 0x10, 0, 1 }).ToArray();
        for (var start = 0; start < stream.Length; start++)
        {
            for (var end = start; end <= stream.Length; end++)
            {
                var sequence = new ReadOnlySequence<byte>(stream, start, end - start);
                var bySequence = Framing.TryReadFrame(ref sequence, 1024, out var frame, out var declaredBySequence);
                var bySpan = Framing.TryReadFrame(stream.AsSpan(start, end - start), 1024, out var length, out var declaredBySpan);

                Assert.Equal(bySequence, bySpan);
                Assert.Equal(declaredBySequence, declaredBySpan);
                Assert.Equal(bySequence == FrameStatus.Complete ? frame.Length : 0, length);
            }
        }
    }

    [Fact]
    public void Write_and_ToFrame_produce_the_same_bytes_and_round_trip()
    {
        var envelope = Sample(1000);
        var writer = new ArrayBufferWriter<byte>();

        Framing.Write(writer, envelope);
        Framing.Write(writer, envelope);

        var single = Framing.ToFrame(envelope);
        Assert.Equal([.. single, .. single], writer.WrittenSpan.ToArray());

        var buffer = new ReadOnlySequence<byte>(writer.WrittenMemory);
        for (var i = 0; i < 2; i++)
        {
            Assert.Equal(FrameStatus.Complete, Framing.TryReadFrame(ref buffer, Framing.DefaultMaxFrameSize, out var frame, out _));
            var parsed = Envelope.Parser.ParseFrom(frame);
            Assert.Equal(envelope, parsed);
            Assert.Equal("events.process.lifecycle", parsed.Publish.Topic);
            Assert.Equal(1000, parsed.Publish.Payload.Length);
        }

        Assert.True(buffer.IsEmpty);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(int.MinValue)]
    public void A_negative_maximum_is_refused(int max)
    {
        var buffer = new ReadOnlySequence<byte>(Framing.ToFrame(Sample()));

        Assert.Throws<ArgumentOutOfRangeException>(() => Framing.TryReadFrame(ref buffer, max, out _, out _));
    }

    private static ReadOnlySequence<byte> Segments(params byte[][] parts)
    {
        var first = new Segment(parts[0], 0);
        var last = first;
        foreach (var part in parts.Skip(1))
        {
            last = last.Append(part);
        }

        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }
}
