using System.Security.Cryptography;
using System.Threading.Channels;
using DaemonEye.Native;
using DaemonEye.Protocol.Filesystem.V1;

namespace DaemonEye.Collectors.Fsmond;

/// <summary>
/// SHA-256 of files under integrity roots, off the event path: the pipeline queues a request
/// (bounded; when full the request is counted and the file is covered by the next rescan), one
/// worker hashes and compares with what it knew (the start-up baseline, or its last hash), and
/// reports a <see cref="FileIntegrity"/> when the content changed, appeared or went.
/// </summary>
internal sealed class IntegrityHasher(int capacity, Func<long> maxBytes, TimeProvider time)
{
    private readonly Channel<HashRequest> _queue = Channel.CreateBounded<HashRequest>(new BoundedChannelOptions(capacity) { SingleReader = true, FullMode = BoundedChannelFullMode.DropWrite });
    private readonly Dictionary<string, FileHash> _known = new(StringComparer.Ordinal);
    private long _queueFull;
    private long _computed;
    private long _rescans;
    private HashRequest? _rescan;

    public Action<FileIntegrity>? Changed { get; set; }

    public long QueueFull => Interlocked.Read(ref _queueFull);

    public long Computed => Interlocked.Read(ref _computed);

    public long Rescans => Interlocked.Read(ref _rescans);

    /// <summary>Set when the start-up baseline is complete.</summary>
    public TaskCompletionSource BaselineDone { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public void Request(string path, Actor? actor)
    {
        if (!_queue.Writer.TryWrite(new HashRequest(path, actor, null)))
        {
            Interlocked.Increment(ref _queueFull);
        }
    }

    /// <summary>Rehashes every file under the roots matching <paramref name="isIntegrity"/> (a rescan after a loss); reports differences.</summary>
    public void Rescan(IReadOnlyList<string> roots, Func<string, bool> isIntegrity)
    {
        // A rescan is never dropped: it is noted, and the worker looks for it after every request
        // (the wake-up below may find the queue full; the next request then carries it).
        Volatile.Write(ref _rescan, new HashRequest(null, null, (roots, isIntegrity)));
        _queue.Writer.TryWrite(new HashRequest(null, null, null));
    }

    public List<FileHash> Hashes()
    {
        lock (_known)
        {
            return [.. _known.Values.Select(h => h.Clone())];
        }
    }

    /// <summary>The baseline, then requests until <paramref name="cancellationToken"/>.</summary>
    public async Task RunAsync(IReadOnlyList<string> roots, Func<string, bool> isIntegrity, CancellationToken cancellationToken)
    {
        foreach (var path in Walk(roots, isIntegrity))
        {
            Remember(Hash(path));
        }

        BaselineDone.TrySetResult();
        try
        {
            await foreach (var next in _queue.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                var request = Interlocked.Exchange(ref _rescan, null) ?? next;
                if (request.Path is null && request.Rescan is null)
                {
                    continue;
                }

                if (request != next && next.Path is not null)
                {
                    Compare(next.Path, next.Actor, IntegrityTrigger.Event);
                }

                if (request.Rescan is { } rescan)
                {
                    var (rescanRoots, filter) = rescan;
                    Interlocked.Increment(ref _rescans);
                    HashSet<string> seen = new(StringComparer.Ordinal);
                    foreach (var path in Walk(rescanRoots, filter))
                    {
                        seen.Add(path);
                        Compare(path, null, IntegrityTrigger.Rescan);
                    }

                    List<string> vanished;
                    lock (_known)
                    {
                        vanished = [.. _known.Keys.Where(k => !seen.Contains(k) && filter(k))];
                    }

                    foreach (var path in vanished)
                    {
                        Compare(path, null, IntegrityTrigger.Rescan);
                    }
                }
                else
                {
                    Compare(request.Path!, request.Actor, IntegrityTrigger.Event);
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    private void Compare(string path, Actor? actor, IntegrityTrigger trigger)
    {
        var after = Hash(path);
        FileHash? before;
        lock (_known)
        {
            _known.TryGetValue(path, out before);
        }

        var gone = after.Problem == "not found";
        if (before is not null && before.Sha256 == after.Sha256 && before.Problem == after.Problem)
        {
            return;
        }

        if (before is null && gone)
        {
            return;
        }

        Remember(after);
        Changed?.Invoke(new FileIntegrity
        {
            Path = path,
            Sha256Before = before?.Sha256 ?? string.Empty,
            BeforeKnown = before is not null,
            SizeBefore = before?.Size ?? 0,
            Sha256After = after.Sha256,
            SizeAfter = after.Size,
            Trigger = trigger,
            Actor = actor,
            TimeUnixNanos = (ulong)(time.GetUtcNow().ToUnixTimeMilliseconds() * 1_000_000),
            Problem = gone ? string.Empty : after.Problem,
        });
    }

    private void Remember(FileHash hash)
    {
        lock (_known)
        {
            if (hash.Problem == "not found")
            {
                _known.Remove(hash.Path);
            }
            else
            {
                _known[hash.Path] = hash;
            }
        }
    }

    /// <summary>The hash of a regular file, or the reason there is none.</summary>
    public FileHash Hash(string path)
    {
        var hash = new FileHash { Path = path, HashedUnixMs = (ulong)time.GetUtcNow().ToUnixTimeMilliseconds() };
        var status = FileStatus.Read(path, out var errno);
        if (status is not { } s)
        {
            hash.Problem = errno == 2 ? "not found" : new KernelException("statx", errno).Message;
            return hash;
        }

        hash.Size = s.Size;
        hash.MtimeUnixNanos = (ulong)s.MtimeUnixNanos;
        if (!s.IsRegular)
        {
            hash.Problem = "not a regular file";
            return hash;
        }

        if ((long)s.Size > maxBytes())
        {
            hash.Problem = $"larger than hash_max_file_bytes ({maxBytes()})";
            return hash;
        }

        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1, FileOptions.SequentialScan);
            hash.Sha256 = Convert.ToHexStringLower(SHA256.HashData(stream));
            Interlocked.Increment(ref _computed);
        }
        catch (FileNotFoundException)
        {
            hash.Problem = "not found";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            hash.Problem = e.Message;
        }

        return hash;
    }

    private static IEnumerable<string> Walk(IReadOnlyList<string> roots, Func<string, bool> isIntegrity)
    {
        var options = new EnumerationOptions { RecurseSubdirectories = true, IgnoreInaccessible = true, AttributesToSkip = FileAttributes.ReparsePoint };
        foreach (var root in roots.Where(Directory.Exists))
        {
            foreach (var file in Directory.EnumerateFiles(root, "*", options))
            {
                if (isIntegrity(file))
                {
                    yield return file;
                }
            }
        }
    }

    private sealed record HashRequest(string? Path, Actor? Actor, (IReadOnlyList<string> Roots, Func<string, bool> Filter)? Rescan);
}
