using DaemonEye.Native;

namespace DaemonEye.Collectors.Fsmond.Sources;

internal enum ChangeKind
{
    Created,
    Written,
    ClosedWrite,
    Attributes,
    Moved,
    Deleted,
    Overflow,
}

/// <summary>One change as a kernel source reported it. Pid 0: the source gives none (inotify).</summary>
internal readonly record struct RawChange(ChangeKind Kind, int Pid, string? Path, string? NewPath, bool IsDirectory, string? Problem);

/// <summary>
/// A kernel event source read on its own thread: waits for the descriptor (no timeout; woken on
/// dispose), reads a batch, decodes it, hands it on. <see cref="Gate"/> lets a test hold the reader
/// between reads (to let the kernel queue fill) without any timing.
/// </summary>
internal abstract class ChangeSource : IDisposable
{
    private readonly EventWait _wait = new();
    private readonly byte[] _buffer = new byte[256 * 1024];
    private Thread? _thread;

    public abstract string Name { get; }

    /// <summary>Reads are held while this is reset (tests only).</summary>
    public ManualResetEventSlim Gate { get; } = new(true);

    /// <summary>Set while the reader waits at a reset <see cref="Gate"/>, so a test knows nothing more is read (tests only).</summary>
    public ManualResetEventSlim Held { get; } = new(false);

    /// <summary>Records read from the kernel.</summary>
    public long KernelEvents { get; protected set; }

    /// <summary>Watches the directories <paramref name="roots"/> (and adds any that are new on later calls).</summary>
    public abstract void Watch(IReadOnlyList<string> roots);

    protected abstract KernelFile Descriptor { get; }

    protected abstract int Read(Span<byte> buffer);

    protected abstract void Decode(ReadOnlySpan<byte> bytes, List<RawChange> into);

    public void Start(Action<List<RawChange>> onBatch, Action<Exception> onFailure)
    {
        _thread = new Thread(() =>
        {
            var batch = new List<RawChange>(1024);
            try
            {
                while (true)
                {
                    if (!Gate.IsSet)
                    {
                        Held.Set();
                        Gate.Wait();
                        Held.Reset();
                    }

                    if (!_wait.Wait(Descriptor))
                    {
                        return;
                    }

                    var n = Read(_buffer);
                    if (n == 0)
                    {
                        continue;
                    }

                    batch.Clear();
                    Decode(_buffer.AsSpan(0, n), batch);
                    onBatch(batch);
                }
            }
#pragma warning disable CA1031 // the reader reports any failure to its owner, which logs it and marks fsmond unhealthy
            catch (Exception e)
#pragma warning restore CA1031
            {
                onFailure(e);
            }
        })
        { IsBackground = true, Name = $"fsmond {Name} reader" };
        _thread.Start();
    }

    /// <summary>The nearest existing directory at or above <paramref name="path"/>.</summary>
    protected static string ExistingAncestor(string path)
    {
        var current = path;
        while (current.Length > 1 && !Directory.Exists(current))
        {
            current = Path.GetDirectoryName(current) ?? "/";
        }

        return current.Length == 0 ? "/" : current;
    }

    protected virtual void Dispose(bool disposing)
    {
        if (disposing)
        {
            _wait.Wake();
            Gate.Set();
            _thread?.Join();
            _wait.Dispose();
            Gate.Dispose();
            Held.Dispose();
        }
    }

    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }
}
