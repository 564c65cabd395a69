using System.Buffers.Binary;
using System.Text;

namespace DaemonEye.Native.Fanotify;

/// <summary>
/// One fanotify event, its names resolved. <see cref="Path"/> is the entry the event is about
/// (directory + name), or for a rename the old name, <see cref="NewPath"/> the new one.
/// <see cref="Pid"/> is the acting process (its thread group id); 0 when the kernel did not give one.
/// A name the resolver could not produce is null, with the reason in <see cref="Problem"/>.
/// </summary>
public readonly record struct FanotifyEvent(FanotifyMask Mask, int Pid, string? Path, string? NewPath, string? Problem)
{
    public bool IsDirectory => (Mask & FanotifyMask.OnDirectory) != 0;
}

/// <summary>
/// Decodes what <see cref="FanotifyGroup.Read"/> returned for a group made with
/// <see cref="FanotifyInitFlags.ReportDirFidName"/>: each struct fanotify_event_metadata and its
/// info records (DFID_NAME; OLD_DFID_NAME and NEW_DFID_NAME for FAN_RENAME). Bytes that do not
/// make an event are an error, never skipped.
/// </summary>
public static class FanotifyDecoder
{
    public const int MetadataVersion = 3;
    private const int MetadataSize = 24;
    private const byte InfoDirFidName = 2;
    private const byte InfoDirFid = 3;
    private const byte InfoFid = 1;
    private const byte InfoOldDirFidName = 10;
    private const byte InfoNewDirFidName = 12;

    /// <summary>Appends the events in <paramref name="buffer"/> to <paramref name="events"/>; returns how many.</summary>
    public static int Decode(ReadOnlySpan<byte> buffer, FileHandleResolver resolver, List<FanotifyEvent> events)
    {
        ArgumentNullException.ThrowIfNull(resolver);
        ArgumentNullException.ThrowIfNull(events);
        var count = 0;
        while (buffer.Length > 0)
        {
            if (buffer.Length < MetadataSize)
            {
                throw new InvalidDataException($"fanotify: {buffer.Length} trailing bytes are less than an event header ({MetadataSize})");
            }

            var length = BinaryPrimitives.ReadUInt32LittleEndian(buffer);
            var version = buffer[4];
            var metadataLength = BinaryPrimitives.ReadUInt16LittleEndian(buffer[6..]);
            if (version != MetadataVersion)
            {
                throw new InvalidDataException($"fanotify: metadata version {version}; this decoder reads version {MetadataVersion}");
            }

            if (length < MetadataSize || length > buffer.Length || metadataLength < MetadataSize || metadataLength > length)
            {
                throw new InvalidDataException($"fanotify: event length {length} (metadata {metadataLength}) does not fit the {buffer.Length} bytes read");
            }

            var mask = (FanotifyMask)BinaryPrimitives.ReadUInt64LittleEndian(buffer[8..]);
            var pid = BinaryPrimitives.ReadInt32LittleEndian(buffer[20..]);
            string? path = null, newPath = null, problem = null;
            var info = buffer[metadataLength..(int)length];
            while (info.Length > 0)
            {
                if (info.Length < 4)
                {
                    throw new InvalidDataException("fanotify: truncated info record header");
                }

                var type = info[0];
                var recordLength = BinaryPrimitives.ReadUInt16LittleEndian(info[2..]);
                if (recordLength < 4 || recordLength > info.Length)
                {
                    throw new InvalidDataException($"fanotify: info record of type {type} claims {recordLength} bytes, {info.Length} left");
                }

                var record = info[..recordLength];
                switch (type)
                {
                    case InfoDirFidName or InfoOldDirFidName:
                        path = Name(record, resolver, ref problem);
                        break;
                    case InfoNewDirFidName:
                        newPath = Name(record, resolver, ref problem);
                        break;
                    case InfoDirFid or InfoFid:
                        path ??= Name(record, resolver, ref problem, hasName: false);
                        break;
                    default:
                        break; // pidfd, error records: not asked for; their presence is harmless
                }

                info = info[recordLength..];
            }

            events.Add(new FanotifyEvent(mask, pid, path, newPath, problem));
            if ((mask & FanotifyMask.OnDirectory) != 0 && (mask & (FanotifyMask.Rename | FanotifyMask.MovedFrom | FanotifyMask.Delete)) != 0)
            {
                // A directory moved or went: cached paths below it are stale for the events that follow.
                resolver.Forget();
            }

            count++;
            buffer = buffer[(int)length..];
        }

        return count;
    }

    /// <summary>A fid record: header (4), fsid (8), struct file_handle (8 + handle_bytes), then for *_NAME the NUL-terminated name.</summary>
    private static string? Name(ReadOnlySpan<byte> record, FileHandleResolver resolver, ref string? problem, bool hasName = true)
    {
        if (record.Length < 20)
        {
            throw new InvalidDataException($"fanotify: fid record of {record.Length} bytes");
        }

        var fsid = BinaryPrimitives.ReadUInt64LittleEndian(record[4..]);
        var handleBytes = BinaryPrimitives.ReadUInt32LittleEndian(record[12..]);
        if (20 + handleBytes > record.Length)
        {
            throw new InvalidDataException($"fanotify: file handle of {handleBytes} bytes in a record of {record.Length}");
        }

        var handle = record.Slice(12, 8 + (int)handleBytes);
        var directory = resolver.Resolve(fsid, handle, out var why);
        problem ??= why;
        if (!hasName)
        {
            return directory;
        }

        var rest = record[(20 + (int)handleBytes)..];
        var end = rest.IndexOf((byte)0);
        var name = Encoding.UTF8.GetString(end < 0 ? rest : rest[..end]);
        if (directory is null)
        {
            return null;
        }

        return name is "" or "." ? directory : directory == "/" ? "/" + name : directory + "/" + name;
    }
}
