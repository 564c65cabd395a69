using System.Buffers.Binary;

namespace DaemonEye.Gateway.Durability;

/// <summary>
/// A torn final write in SQLite's write-ahead log, found before SQLite opens the database. A WAL is
/// a 32-byte header and whole frames of 24 + page-size bytes (sqlite.org/fileformat.html, "The WAL
/// File Format"), each frame carrying the header's salts and a checksum that runs on from the frame
/// before it. A torn write shows as a length that is not a whole number of frames (a write cut
/// short at the end of the file), or, in a WAL that SQLite reuses from its start (the file is kept
/// at its size, WalCheckpointer), as a frame of the current generation (the header's salts) whose
/// checksum fails, or as frames after the last commit frame (a transaction whose commit never came).
/// Frames of an earlier generation after the valid ones are what reuse leaves, not a tear. SQLite's
/// own recovery ignores a torn frame and the transaction it belonged to in the same way; this only
/// makes the event visible.
/// </summary>
/// <param name="PartialBytes">The bytes after the last whole transaction that SQLite drops.</param>
/// <param name="FrameSize">The WAL's frame size.</param>
public sealed record WalInspection(long PartialBytes, long FrameSize)
{
    private const int HeaderSize = 32;
    private const int FrameHeaderSize = 24;
    private const uint MagicLittleEndian = 0x377f0682;
    private const uint MagicBigEndian = 0x377f0683;

    /// <summary>The torn tail of the WAL at <paramref name="walPath"/>, or null when it has none (or does not exist).</summary>
    public static WalInspection? Inspect(string walPath)
    {
        var info = new FileInfo(walPath);
        if (!info.Exists || info.Length == 0)
        {
            return null;
        }

        if (info.Length < HeaderSize)
        {
            return new WalInspection(info.Length, 0);
        }

        Span<byte> header = stackalloc byte[HeaderSize];
        using var file = File.OpenRead(walPath);
        file.ReadExactly(header);

        var pageSize = BinaryPrimitives.ReadUInt32BigEndian(header[8..]);
        if (pageSize == 1)
        {
            pageSize = 65536; // the format's encoding of 64 KiB
        }

        if (pageSize is < 512 or > 65536 || (pageSize & (pageSize - 1)) != 0)
        {
            // Not a header SQLite wrote completely: SQLite ignores such a WAL.
            return new WalInspection(info.Length, 0);
        }

        var frame = FrameHeaderSize + (long)pageSize;
        var partial = (info.Length - HeaderSize) % frame;
        if (partial != 0)
        {
            return new WalInspection(partial, frame);
        }

        var magic = BinaryPrimitives.ReadUInt32BigEndian(header);
        if (magic is not (MagicLittleEndian or MagicBigEndian))
        {
            return new WalInspection(info.Length, 0);
        }

        var bigEndian = magic == MagicBigEndian;
        var (s0, s1) = Checksum(header[..24], bigEndian, 0, 0);
        if (s0 != BinaryPrimitives.ReadUInt32BigEndian(header[24..]) || s1 != BinaryPrimitives.ReadUInt32BigEndian(header[28..]))
        {
            // SQLite ignores a WAL whose header fails its checksum: nothing in it was committed.
            return null;
        }

        var buffer = new byte[frame];
        long offset = HeaderSize, committed = HeaderSize;
        while (offset + frame <= info.Length)
        {
            file.ReadExactly(buffer);
            var current = buffer.AsSpan();
            if (!current[8..16].SequenceEqual(header[16..24]))
            {
                break; // an earlier generation's frame: the log ends before it
            }

            (s0, s1) = Checksum(current[..8], bigEndian, s0, s1);
            (s0, s1) = Checksum(current[FrameHeaderSize..], bigEndian, s0, s1);
            if (s0 != BinaryPrimitives.ReadUInt32BigEndian(current[16..]) || s1 != BinaryPrimitives.ReadUInt32BigEndian(current[20..]))
            {
                return new WalInspection(offset + frame - committed, frame); // this generation's frame, not written whole
            }

            offset += frame;
            if (BinaryPrimitives.ReadUInt32BigEndian(current[4..]) != 0)
            {
                committed = offset; // a commit frame
            }
        }

        return offset == committed ? null : new WalInspection(offset - committed, frame);
    }

    /// <summary>SQLite's WAL checksum: over 32-bit words in the byte order the magic names, two running sums.</summary>
    private static (uint, uint) Checksum(ReadOnlySpan<byte> data, bool bigEndian, uint s0, uint s1)
    {
        for (var i = 0; i + 8 <= data.Length; i += 8)
        {
            var x0 = bigEndian ? BinaryPrimitives.ReadUInt32BigEndian(data[i..]) : BinaryPrimitives.ReadUInt32LittleEndian(data[i..]);
            var x1 = bigEndian ? BinaryPrimitives.ReadUInt32BigEndian(data[(i + 4)..]) : BinaryPrimitives.ReadUInt32LittleEndian(data[(i + 4)..]);
            s0 = unchecked(s0 + x0 + s1);
            s1 = unchecked(s1 + x1 + s0);
        }

        return (s0, s1);
    }
}
