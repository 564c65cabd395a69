using System.Threading.Channels;
using DaemonEye.Collectors.Fsmond.Sources;
using DaemonEye.Native;
using Microsoft.Extensions.Logging;

namespace DaemonEye.Collectors.Fsmond;

/// <summary>
/// The kernel source (fanotify, or inotify where fanotify is refused or asked for), the pipeline and
/// the integrity hasher, wired together. <see cref="Output"/> holds what is to be published.
/// </summary>
internal sealed partial class FileWatch : IDisposable
{
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private Task? _hasher;

    public FileWatch(FsmondSettings settings, IReadOnlySet<int> selfPids, string collectorId, TimeProvider time, ILogger logger)
    {
        _logger = logger;
        Settings = settings;
        Output = Channel.CreateBounded<Outgoing>(new BoundedChannelOptions(settings.PublishQueueCapacity) { SingleReader = true, FullMode = BoundedChannelFullMode.DropWrite });
        (Source, SourceStatus) = OpenSource(settings, logger);
        var hasher = new IntegrityHasher(settings.HashQueueCapacity, () => Settings.HashMaxFileBytes, time);
        Pipeline = new FileEventPipeline(settings, Output, hasher, Source.Name, selfPids, collectorId, time)
        {
            Overflowed = n => LogOverflow(_logger, Source.Name, n),
        };
    }

    public FsmondSettings Settings { get; private set; }

    public ChangeSource Source { get; }

    /// <summary>"fanotify", or "inotify (...why)": what HealthCheck and the logs say.</summary>
    public string SourceStatus { get; }

    public FileEventPipeline Pipeline { get; }

    public Channel<Outgoing> Output { get; }

    public Exception? Failure { get; private set; }

    /// <summary>Marks or watches the roots, starts the baseline and the reader.</summary>
    public void Start()
    {
        var filter = Pipeline.Filter;
        Source.Watch(filter.Roots);
        _hasher = Task.Run(() => Pipeline.Hasher.RunAsync(filter.IntegrityRoots, filter.IsIntegrity, _stop.Token));
        Source.Start(Pipeline.Handle, e =>
        {
            Failure = e;
            LogReaderFailed(_logger, Source.Name, e);
        });
    }

    /// <summary>New settings (UpdateConfig): the globs apply at once; new roots are marked or watched.</summary>
    public void Reconfigure(FsmondSettings settings)
    {
        Settings = settings;
        Pipeline.Reconfigure(settings);
        Source.Watch(Pipeline.Filter.Roots);
    }

    private static (ChangeSource Source, string Status) OpenSource(FsmondSettings settings, ILogger logger)
    {
        if (settings.Source == "inotify")
        {
            LogInotify(logger, "asked for (source: inotify)");
            return (new InotifySource(settings.InotifyMaxWatches), "inotify (asked for by the source setting): no process attribution");
        }

        FanotifySource? fanotify = null;
        try
        {
            // Unprivileged fanotify_init can succeed (Linux 5.13+) while the filesystem mark is then
            // refused: both must work before fanotify is the source.
            fanotify = new FanotifySource(settings.Queue == "unlimited");
            fanotify.Watch(new PathFilter(settings).Roots);
            return (fanotify, "fanotify");
        }
        catch (KernelException e) when (settings.Source == "auto")
        {
            fanotify?.Dispose();
            var why = $"fanotify refused: {e.Message}{(e.IsPermissionDenied ? " (needs CAP_SYS_ADMIN)" : string.Empty)}";
            LogInotify(logger, why);
            return (new InotifySource(settings.InotifyMaxWatches), $"inotify ({why}): no process attribution");
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        Source.Dispose();
        try
        {
            _hasher?.Wait();
        }
        catch (AggregateException)
        {
        }

        _stop.Dispose();
    }

    [LoggerMessage(EventId = 1, Level = LogLevel.Warning, Message = "fsmond uses inotify, not fanotify: {Reason}. inotify reports no process: events carry no pid, executable or user")]
    private static partial void LogInotify(ILogger logger, string reason);

    [LoggerMessage(EventId = 2, Level = LogLevel.Warning, Message = "The {Source} queue overflowed ({Overflows} so far): changes were lost; rescanning the integrity roots")]
    private static partial void LogOverflow(ILogger logger, string source, long overflows);

    [LoggerMessage(EventId = 3, Level = LogLevel.Error, Message = "The {Source} reader stopped")]
    private static partial void LogReaderFailed(ILogger logger, string source, Exception exception);
}
