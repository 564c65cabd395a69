using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Threading.Channels;
using DaemonEye.Collectors.Procmond.Proc;
using DaemonEye.Protocol.Process.V1;

namespace DaemonEye.Collectors.Procmond;

/// <summary>
/// SHA-256 of executables, off the scan path: the scan asks (<see cref="Request"/>) and moves on;
/// one background worker reads and hashes, through a bounded queue. Hashes are cached by the file's
/// device, inode, size and mtime, so the hundred processes running one binary cost one hash.
/// A request that finds the queue full is not lost: it is counted, and the next scan asks again.
/// Integrity checks (a running image replaced or deleted on disk) go through the same worker,
/// which hashes what is missing and then hands the finished event to <see cref="IntegrityReady"/>.
/// </summary>
internal sealed class ExecutableHasher
{
    private readonly Channel<Job> _queue;
    private readonly ConcurrentDictionary<FileKey, string> _cache = new();
    private readonly ConcurrentDictionary<FileKey, byte> _pending = new();
    private readonly int _cacheLimit;
    private readonly Func<long> _maxFileBytes;
    private long _computed;
    private long _cacheHits;
    private long _queueFull;
    private long _errors;
    private long _tooLarge;
    private long _evictions;

    public ExecutableHasher(int queueCapacity, int cacheLimit, Func<long> maxFileBytes)
    {
        _queue = Channel.CreateBounded<Job>(new BoundedChannelOptions(queueCapacity)
        {
            FullMode = BoundedChannelFullMode.Wait,
            SingleReader = true,
        });
        _cacheLimit = cacheLimit;
        _maxFileBytes = maxFileBytes;
    }

    /// <summary>Receives integrity events once their hashes are known (on the worker).</summary>
    public Func<ProcessIntegrity, CancellationToken, ValueTask>? IntegrityReady { get; set; }

    public long Computed => Interlocked.Read(ref _computed);

    public long CacheHits => Interlocked.Read(ref _cacheHits);

    /// <summary>Requests not queued because the queue was full (retried by a later scan).</summary>
    public long QueueFull => Interlocked.Read(ref _queueFull);

    /// <summary>Files that could not be read (vanished, permission denied, I/O error).</summary>
    public long Errors => Interlocked.Read(ref _errors);

    /// <summary>Files over hash_max_file_bytes, not hashed.</summary>
    public long TooLarge => Interlocked.Read(ref _tooLarge);

    /// <summary>Times the cache reached hash_cache_entries and was emptied.</summary>
    public long Evictions => Interlocked.Read(ref _evictions);

    public int Cached => _cache.Count;

    public int Queued => _queue.Reader.Count;

    public string? TryGet(FileKey key) => _cache.TryGetValue(key.Identity, out var hash) ? hash : null;

    /// <summary>Asks for the hash of the file at <paramref name="path"/> whose identity is <paramref name="key"/>
    /// (for a process: its /proc/&lt;pid&gt;/exe, which opens the running image even when deleted).</summary>
    public void Request(FileKey key, string path)
    {
        key = key.Identity;
        if (_cache.ContainsKey(key) || !_pending.TryAdd(key, 0))
        {
            return;
        }

        if (!_queue.Writer.TryWrite(new Job(key, path, null, null, null)))
        {
            _pending.TryRemove(key, out _);
            Interlocked.Increment(ref _queueFull);
        }
    }

    /// <summary>Queues an integrity event to be completed with the original and current hashes. When
    /// the queue is full the event is handed on at once without the hashes it lacks (counted).</summary>
    public ValueTask RequestIntegrityAsync(ProcessIntegrity integrity, FileKey? original, string originalPath, FileKey? current, CancellationToken cancellationToken)
    {
        if (original is { } o && TryGet(o) is { } known)
        {
            integrity.OriginalSha256 = known;
        }

        if (current is { } c && TryGet(c) is { } now)
        {
            integrity.CurrentSha256 = now;
        }

        var needOriginal = original is not null && integrity.OriginalSha256.Length == 0;
        var needCurrent = current is not null && integrity.CurrentSha256.Length == 0;
        if ((!needOriginal && !needCurrent) || !_queue.Writer.TryWrite(new Job(original?.Identity ?? default, originalPath, integrity, current?.Identity, integrity.Executable)))
        {
            if (needOriginal || needCurrent)
            {
                Interlocked.Increment(ref _queueFull);
            }

            return IntegrityReady?.Invoke(integrity, cancellationToken) ?? ValueTask.CompletedTask;
        }

        return ValueTask.CompletedTask;
    }

    /// <summary>The worker: runs until cancelled.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        try
        {
            await foreach (var job in _queue.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                await ProcessAsync(job, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>Does the queued work now, on the caller (tests, benchmarks); returns the number of jobs done.</summary>
    public async Task<int> DrainAsync(CancellationToken cancellationToken)
    {
        var done = 0;
        while (_queue.Reader.TryRead(out var job))
        {
            await ProcessAsync(job, cancellationToken).ConfigureAwait(false);
            done++;
        }

        return done;
    }

    private async ValueTask ProcessAsync(Job job, CancellationToken cancellationToken)
    {
        if (job.Integrity is null)
        {
            Hash(job.Key, job.Path);
            _pending.TryRemove(job.Key, out _);
            return;
        }

        if (job.Integrity.OriginalSha256.Length == 0 && job.Key != default)
        {
            job.Integrity.OriginalSha256 = TryGet(job.Key) ?? Hash(job.Key, job.Path) ?? string.Empty;
        }

        if (job.Integrity.CurrentSha256.Length == 0 && job.CurrentKey is { } current && job.CurrentPath is not null)
        {
            job.Integrity.CurrentSha256 = TryGet(current) ?? Hash(current, job.CurrentPath) ?? string.Empty;
        }

        if (IntegrityReady is { } ready)
        {
            await ready(job.Integrity, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Hashes synchronously (the worker, or a test); null when unreadable or too large.</summary>
    public string? Hash(FileKey key, string path)
    {
        key = key.Identity;
        if (_cache.TryGetValue(key, out var cached))
        {
            Interlocked.Increment(ref _cacheHits);
            return cached;
        }

        if ((long)key.Size > _maxFileBytes())
        {
            Interlocked.Increment(ref _tooLarge);
            return null;
        }

        string hash;
        try
        {
            using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1, FileOptions.SequentialScan);
            hash = Convert.ToHexStringLower(SHA256.HashData(file));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Interlocked.Increment(ref _errors);
            return null;
        }

        if (_cache.Count >= _cacheLimit)
        {
            _cache.Clear();
            Interlocked.Increment(ref _evictions);
        }

        _cache[key] = hash;
        Interlocked.Increment(ref _computed);
        return hash;
    }

    private sealed record Job(FileKey Key, string Path, ProcessIntegrity? Integrity, FileKey? CurrentKey, string? CurrentPath);
}
