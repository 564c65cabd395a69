using System.Buffers.Binary;

namespace DaemonEye.Gateway.Durability;

/// <summary>
/// A torn final write in SQLite's write-ahead log, found before SQLite opens the database. A WAL is
/// a 32-byte header and whole frames of 24 + page-size bytes (sqlite.org/fileformat.html, "The WAL
/// File Format"); a length that is not a whole number of frames is a write the crash cut short.
/// SQLite's own recovery then ignores that frame and the transaction it belonged to (its frame
/// checksums see to that); this only makes the event visible.
/// </summary>
/// <param name="PartialBytes">The bytes of the partial frame at the end.</param>
/// <param name="FrameSize">The WAL's frame size.</param>
public sealed record WalInspection(long PartialBytes, long FrameSize)
{
    private const int HeaderSize = 32;
    private const int FrameHeaderSize = 24;

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
        using (var file = File.OpenRead(walPath))
        {
            file.ReadExactly(header);
        }

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
        return partial == 0 ? null : new WalInspection(partial, frame);
    }
}
