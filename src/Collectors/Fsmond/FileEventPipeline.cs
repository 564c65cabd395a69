using System.Threading.Channels;
using DaemonEye.Collectors.Fsmond.Sources;
using DaemonEye.Native;
using DaemonEye.Protocol.Filesystem.V1;
using DaemonEye.Topics;
using Google.Protobuf;

namespace DaemonEye.Collectors.Fsmond;

/// <summary>A message for the bus.</summary>
internal readonly record struct Outgoing(string Topic, IMessage Message);

/// <summary>
/// Turns kernel changes into published events: self-exclusion, the globs, coalescing (one MODIFIED
/// per close after writing; a create's own close folded into CREATED; attribute events that changed
/// nothing), the bulk windows, the rate limit, the integrity requests and the built-in anomalies.
/// Every change that does not become an event is counted under the reason
/// (<see cref="FsmondCounters"/>). Runs on the source's reader thread, one batch at a time.
/// </summary>
internal sealed partial class FileEventPipeline
{
    public const string Prefix = WellKnownTopics.FilesystemPrefix;
    public const string CreatedTopic = Prefix + "created";
    public const string ModifiedTopic = Prefix + "modified";
    public const string DeletedTopic = Prefix + "deleted";
    public const string MovedTopic = Prefix + "moved";
    public const string AttributesTopic = Prefix + "attributes";
    public const string IntegrityTopic = Prefix + "integrity";
    public const string BulkTopic = Prefix + "bulk";
    public const string AnomalyTopic = Prefix + "anomaly";
    private const int MaxTracked = 65536;

    private readonly object _lock = new();
    private readonly Channel<Outgoing> _out;
    private readonly TimeProvider _time;
    private readonly string _collectorId;
    private readonly string _source;
    private readonly IReadOnlySet<int> _selfPids;
    private readonly ProcessAttribution _attribution = new();
    private readonly Dictionary<string, int> _writes = new(StringComparer.Ordinal);
    private readonly HashSet<string> _createdOpen = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (uint Mode, uint Uid, uint Gid)> _attributes = new(StringComparer.Ordinal);
    private readonly Queue<FileEvent> _recent = new();
    private FsmondSettings _settings;
    private PathFilter _filter;
    private double _tokens;
    private long _lastRefill;
    private ulong _sequence;
    private bool _recentTruncated;

    public FileEventPipeline(FsmondSettings settings, Channel<Outgoing> output, IntegrityHasher hasher, string source, IReadOnlySet<int> selfPids, string collectorId, TimeProvider time)
    {
        _settings = settings;
        _filter = new PathFilter(settings);
        _out = output;
        Hasher = hasher;
        _source = source;
        _selfPids = selfPids;
        _collectorId = collectorId;
        _time = time;
        _tokens = settings.MaxEventsPerSecond;
        _lastRefill = time.GetTimestamp();
        hasher.Changed = integrity =>
        {
            integrity.CollectorId = _collectorId;
            Interlocked.Increment(ref Counters.Integrity);
            Emit(IntegrityTopic, integrity);
        };
    }

    public FsmondCounters Counters { get; } = new();

    /// <summary>
    /// The numbering this pipeline gives events (<c>FileSnapshot.run</c>): random, never 0, drawn once.
    /// Sequences start from 1 in each pipeline, so (collector, run, sequence) names one event; an event
    /// is not changed once numbered (it is remembered and published as it is then).
    /// </summary>
    public ulong Run { get; } = (ulong)Random.Shared.NextInt64() + 1;

    public IntegrityHasher Hasher { get; }

    public PathFilter Filter => Volatile.Read(ref _filter);

    /// <summary>Raised (on the reader thread) after an overflow; the owner logs and rescans.</summary>
    public Action<long>? Overflowed { get; set; }

    /// <summary>Replaces the settings (UpdateConfig); the globs apply from the next change.</summary>
    public void Reconfigure(FsmondSettings settings)
    {
        lock (_lock)
        {
            _settings = settings;
            Volatile.Write(ref _filter, new PathFilter(settings));
        }
    }

    public void Handle(List<RawChange> batch)
    {
        lock (_lock)
        {
            _attribution.NextBatch();
            foreach (var change in batch)
            {
                Handle(change);
            }
        }
    }

    private void Handle(in RawChange change)
    {
        Counters.KernelChanges++;
        if (change.Kind == ChangeKind.Overflow)
        {
            var n = ++Counters.Overflows;
            Emit(AnomalyTopic, new FileAnomaly { Kind = AnomalyKind.QueueOverflow, Detail = $"the kernel's {_source} queue overflowed: changes were lost; integrity roots are rescanned", Count = (ulong)n, CollectorId = _collectorId, TimeUnixNanos = Now() });
            Hasher.Rescan(_filter.IntegrityRoots, _filter.IsIntegrity);
            Overflowed?.Invoke(n);
            return;
        }

        if (change.Path is null && change.NewPath is null)
        {
            Counters.Unresolved++;
            return;
        }

        if (_selfPids.Contains(change.Pid))
        {
            Counters.SelfExcluded++;
            return;
        }

        var path = change.Path ?? change.NewPath!;
        var cls = _filter.Classify(path);
        if (change.Kind == ChangeKind.Moved && change.NewPath is { } to && cls == PathClass.Ignored)
        {
            cls = _filter.Classify(to);
        }

        if (cls == PathClass.Ignored)
        {
            Counters.Filtered++;
            return;
        }

        switch (change.Kind)
        {
            case ChangeKind.Created:
                Track(_createdOpen, path);
                Publish(FileEventKind.Created, change, path, null, cls, 0);
                break;
            case ChangeKind.Written:
                if (_writes.Count >= MaxTracked && !_writes.ContainsKey(path))
                {
                    _writes.Clear();
                    Counters.TrackingResets++;
                }

                _writes[path] = _writes.GetValueOrDefault(path) + 1;
                break;
            case ChangeKind.ClosedWrite:
                var writes = _writes.Remove(path, out var w) ? w : 0;
                var justCreated = _createdOpen.Remove(path);
                Counters.Coalesced += writes; // the writes before the close: in this event's coalesced count
                if (justCreated && (writes == 0 || FileStatus.Read(path, out _) is { Size: 0 }))
                {
                    // The close of a new file that is still empty (O_TRUNC counts as a write): its CREATED said it all.
                    Counters.Coalesced++;
                }
                else
                {
                    Publish(FileEventKind.Modified, change, path, null, cls, (uint)writes);
                }

                break;
            case ChangeKind.Attributes:
                Publish(FileEventKind.Attributes, change, path, null, cls, 0);
                break;
            case ChangeKind.Moved:
                if (change.Path is { } from)
                {
                    _createdOpen.Remove(from);
                    Counters.Coalesced += _writes.Remove(from, out var pending) ? pending : 0;
                    _attributes.Remove(from);
                }

                Publish(FileEventKind.Moved, change, change.Path ?? string.Empty, change.NewPath ?? string.Empty, cls, 0);
                break;
            case ChangeKind.Deleted:
                _createdOpen.Remove(path);
                Counters.Coalesced += _writes.Remove(path, out var unclosed) ? unclosed : 0;
                _attributes.Remove(path);
                Publish(FileEventKind.Deleted, change, path, null, cls, 0);
                break;
        }
    }

    private void Publish(FileEventKind kind, in RawChange change, string path, string? newPath, PathClass cls, uint coalesced)
    {
        var statPath = kind == FileEventKind.Moved ? newPath : kind == FileEventKind.Deleted ? null : path;
        var e = new FileEvent
        {
            Kind = kind,
            Path = path,
            NewPath = newPath ?? string.Empty,
            IsDirectory = change.IsDirectory,
            TimeUnixNanos = Now(),
            Source = _source,
            Coalesced = coalesced,
            CollectorId = _collectorId,
        };
        if (!string.IsNullOrEmpty(statPath) && FileStatus.Read(statPath, out _) is { } s)
        {
            e.StatKnown = true;
            e.Mode = s.Mode;
            e.Uid = s.Uid;
            e.Gid = s.Gid;
            e.Size = s.Size;
            e.Executable = s.IsRegular && ((s.Mode & 0x49) != 0 || HasExecutableMagic(statPath, s));
        }

        var target = string.IsNullOrEmpty(newPath) ? path : newPath;
        if (cls == PathClass.ExecutableOnly && !e.Executable && _filter.Classify(target) != PathClass.Watched)
        {
            Counters.NotExecutable++;
            return;
        }

        if (kind == FileEventKind.Attributes)
        {
            var now = (e.Mode, e.Uid, e.Gid);
            if (_attributes.TryGetValue(path, out var previous))
            {
                if (previous == now)
                {
                    Counters.Coalesced++; // times or extended attributes only: not a permission or owner change
                    return;
                }

                (e.PreviousMode, e.PreviousUid, e.PreviousGid, e.PreviousKnown) = (previous.Mode, previous.Uid, previous.Gid, true);
            }
        }

        if (e.StatKnown && !change.IsDirectory)
        {
            if (_attributes.Count >= MaxTracked && !_attributes.ContainsKey(target))
            {
                _attributes.Clear();
                Counters.TrackingResets++;
            }

            _attributes[target] = (e.Mode, e.Uid, e.Gid);
        }

        e.Actor = _attribution.For(change.Pid);
        e.IntegrityRoot = _filter.IsIntegrity(path) || (!string.IsNullOrEmpty(newPath) && _filter.IsIntegrity(newPath));
        e.Sequence = ++_sequence;
        Remember(e);
        CheckAnomalies(e);
        if (e.IntegrityRoot && !e.IsDirectory && kind != FileEventKind.Attributes)
        {
            if (_filter.IsIntegrity(path))
            {
                Hasher.Request(path, e.Actor);
            }

            if (!string.IsNullOrEmpty(newPath) && _filter.IsIntegrity(newPath))
            {
                Hasher.Request(newPath, e.Actor);
            }
        }

        if (!CountBulk(e) && !e.IntegrityRoot)
        {
            Counters.BulkSuppressed++;
            return;
        }

        if (!TakeToken())
        {
            Counters.RateLimited++;
            return;
        }

        if (Emit(Topic(kind), e))
        {
            Counters.Published++;
        }
    }

    private static string Topic(FileEventKind kind) => kind switch
    {
        FileEventKind.Created => CreatedTopic,
        FileEventKind.Modified => ModifiedTopic,
        FileEventKind.Deleted => DeletedTopic,
        FileEventKind.Moved => MovedTopic,
        _ => AttributesTopic,
    };

    private void CheckAnomalies(FileEvent e)
    {
        var path = string.IsNullOrEmpty(e.NewPath) ? e.Path : e.NewPath;
        if (e.Executable && e.Kind is FileEventKind.Created or FileEventKind.Modified or FileEventKind.Moved or FileEventKind.Attributes && _filter.IsTemporary(path))
        {
            Anomaly(AnomalyKind.ExecutableInTemp, path, e.Actor, $"an executable file in a temporary directory (mode {Convert.ToString(e.Mode & 0xFFF, 8)})");
        }

        const uint SetId = 0xC00; // S_ISUID | S_ISGID
        if (e.StatKnown && (e.Mode & SetId) != 0 && (!e.PreviousKnown || (e.PreviousMode & SetId) == 0) && e.Kind is FileEventKind.Attributes or FileEventKind.Created or FileEventKind.Moved)
        {
            Anomaly(AnomalyKind.SetuidAdded, path, e.Actor, $"setuid/setgid bit set (mode {Convert.ToString(e.Mode & 0xFFF, 8)}, owner uid {e.Uid})");
        }

        if (path == "/etc/ld.so.preload" && e.Kind != FileEventKind.Attributes)
        {
            Anomaly(AnomalyKind.PreloadChanged, path, e.Actor, $"{e.Kind} of /etc/ld.so.preload: every dynamically linked program loads the libraries it names");
        }
    }

    private void Anomaly(AnomalyKind kind, string path, Actor? actor, string detail)
    {
        Counters.Anomalies++;
        Emit(AnomalyTopic, new FileAnomaly { Kind = kind, Path = path, Actor = actor, Detail = detail, CollectorId = _collectorId, TimeUnixNanos = Now() });
    }

    private static bool HasExecutableMagic(string path, FileStatus s)
    {
        if (s.Size < 2)
        {
            return false;
        }

        try
        {
            using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1);
            Span<byte> magic = stackalloc byte[4];
            var n = f.Read(magic);
            return (n >= 2 && magic[0] == '#' && magic[1] == '!') || (n == 4 && magic[0] == 0x7F && magic[1] == 'E' && magic[2] == 'L' && magic[3] == 'F');
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private bool TakeToken()
    {
        var now = _time.GetTimestamp();
        var rate = _settings.MaxEventsPerSecond;
        _tokens = Math.Min(rate, _tokens + (_time.GetElapsedTime(_lastRefill, now).TotalSeconds * rate));
        _lastRefill = now;
        if (_tokens < 1)
        {
            return false;
        }

        _tokens--;
        return true;
    }

    private void Remember(FileEvent e)
    {
        if (_settings.RecentEvents == 0)
        {
            return;
        }

        _recent.Enqueue(e);
        while (_recent.Count > _settings.RecentEvents)
        {
            _recent.Dequeue();
            _recentTruncated = true;
        }
    }

    /// <summary>The recent-events window (oldest first) and whether older events fell out of it.</summary>
    public (List<FileEvent> Events, bool Truncated) Recent()
    {
        lock (_lock)
        {
            return ([.. _recent], _recentTruncated);
        }
    }

    private bool Emit(string topic, IMessage message)
    {
        if (_out.Writer.TryWrite(new Outgoing(topic, message)))
        {
            return true;
        }

        Interlocked.Increment(ref Counters.QueueFull);
        return false;
    }

    private static void Track(HashSet<string> set, string path)
    {
        if (set.Count >= MaxTracked)
        {
            set.Clear();
        }

        set.Add(path);
    }

    private ulong Now() => (ulong)(_time.GetUtcNow().ToUnixTimeMilliseconds() * 1_000_000);
}

/// <summary>What fsmond did with every change the kernel reported. Written on the reader thread, read by HealthCheck and the snapshot task.</summary>
internal sealed class FsmondCounters
{
    public long KernelChanges;
    public long Published;
    public long Filtered;
    public long NotExecutable;
    public long SelfExcluded;
    public long Coalesced;
    public long BulkSuppressed;
    public long RateLimited;
    public long QueueFull;
    public long Unresolved;
    public long Overflows;
    public long TrackingResets;
    public long Anomalies;
    public long BulkSummaries;
    public long Integrity;

    public IEnumerable<KeyValuePair<string, long>> All() =>
    [
        new("kernel_changes", Volatile.Read(ref KernelChanges)),
        new("published", Volatile.Read(ref Published)),
        new("filtered", Volatile.Read(ref Filtered)),
        new("not_executable", Volatile.Read(ref NotExecutable)),
        new("self_excluded", Volatile.Read(ref SelfExcluded)),
        new("coalesced", Volatile.Read(ref Coalesced)),
        new("bulk_suppressed", Volatile.Read(ref BulkSuppressed)),
        new("rate_limited", Volatile.Read(ref RateLimited)),
        new("publish_queue_full", Volatile.Read(ref QueueFull)),
        new("names_unresolved", Volatile.Read(ref Unresolved)),
        new("queue_overflows", Volatile.Read(ref Overflows)),
        new("tracking_resets", Volatile.Read(ref TrackingResets)),
        new("anomalies", Volatile.Read(ref Anomalies)),
        new("bulk_summaries", Volatile.Read(ref BulkSummaries)),
        new("integrity_events", Volatile.Read(ref Integrity)),
    ];
}
