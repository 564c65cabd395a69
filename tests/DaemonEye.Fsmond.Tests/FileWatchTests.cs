using System.Security.Cryptography;
using System.Text;
using DaemonEye.Collectors.Fsmond;
using DaemonEye.Native.Tests;
using DaemonEye.Protocol.Filesystem.V1;
using Google.Protobuf;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace DaemonEye.Fsmond.Tests;

/// <summary>
/// fsmond's watch (kernel source, pipeline, hasher) in-process on a tmpfs of the test's own, the
/// changes made by a perl child. Steps are phase barriers: the child answers when its change is
/// done; the test then makes a barrier file itself, and everything the pipeline published before
/// the barrier's event is what the step caused (the kernel queue is in order). Time is a fake clock.
/// </summary>
public sealed class FileWatchTests : IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(120);
    private readonly PrivateTmpfs _fs = new("de-fsmond-");
    private readonly FakeTimeProvider _time = new(DateTimeOffset.UnixEpoch.AddYears(55));
    private readonly Writer _writer = new();
    private FileWatch? _watch;
    private int _barriers;

    private FileWatch Start(Action<FsmondSettings>? configure = null, IReadOnlySet<int>? self = null)
    {
        var settings = new FsmondSettings
        {
            Watch = [_fs.Root + "/**"],
            ExecutableWatch = [],
            Exclude = [],
            Integrity = [_fs.Root + "/integrity/**"],
        };
        configure?.Invoke(settings);
        _watch = new FileWatch(settings, self ?? new HashSet<int>(), "fsmond-test", _time, NullLogger.Instance);
        _watch.Start();
        return _watch;
    }

    /// <summary>Everything published until the event of a barrier file this process makes.</summary>
    private async Task<List<IMessage>> UntilBarrierAsync()
    {
        var barrier = _fs.PathOf($"barrier-{++_barriers}");
        new FileStream(barrier, FileMode.CreateNew).Dispose();
        var seen = new List<IMessage>();
        using var timeout = new CancellationTokenSource(Patience);
        await foreach (var item in _watch!.Output.Reader.ReadAllAsync(timeout.Token))
        {
            if (item.Message is FileEvent { Kind: FileEventKind.Created } e && e.Path == barrier)
            {
                return seen;
            }

            seen.Add(item.Message);
        }

        return seen;
    }

    private async Task<T> NextAsync<T>(Func<T, bool> match)
        where T : IMessage
    {
        using var timeout = new CancellationTokenSource(Patience);
        await foreach (var item in _watch!.Output.Reader.ReadAllAsync(timeout.Token))
        {
            if (item.Message is T t && match(t))
            {
                return t;
            }
        }

        throw new InvalidOperationException("unreachable");
    }

    private static string Sha(string text) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));

    [RootFact]
    public async Task Create_write_rename_chmod_delete_each_give_exactly_their_event_with_the_writers_pid()
    {
        var watch = Start();
        var a = _fs.PathOf("a.txt");
        var b = _fs.PathOf("b.txt");
        await UntilBarrierAsync();

        await _writer.DoAsync($"create {a}");
        var step = await UntilBarrierAsync();
        Assert.True(step.Count == 1, string.Join("\n", step));
        var created = Assert.IsType<FileEvent>(step[0]);
        Assert.Equal((FileEventKind.Created, a, (uint)_writer.Pid), (created.Kind, created.Path, created.Actor.Pid));
        Assert.Equal((Attribution.Known, "/usr/bin/perl", "root", "fanotify"), (created.Actor.Attribution, created.Actor.Executable, created.Actor.User, created.Source));

        await _writer.DoAsync($"write {a} hello");
        var modified = Assert.IsType<FileEvent>(Assert.Single(await UntilBarrierAsync()));
        Assert.Equal((FileEventKind.Modified, a, (uint)_writer.Pid, 5UL), (modified.Kind, modified.Path, modified.Actor.Pid, modified.Size));

        await _writer.DoAsync($"rename {a} {b}");
        var moved = Assert.IsType<FileEvent>(Assert.Single(await UntilBarrierAsync()));
        Assert.Equal((FileEventKind.Moved, a, b, (uint)_writer.Pid), (moved.Kind, moved.Path, moved.NewPath, moved.Actor.Pid));

        await _writer.DoAsync($"chmod 0700 {b}");
        var chmod = Assert.IsType<FileEvent>(Assert.Single(await UntilBarrierAsync()));
        Assert.Equal((FileEventKind.Attributes, b, (uint)_writer.Pid, 0x81C0u, true), (chmod.Kind, chmod.Path, chmod.Actor.Pid, chmod.Mode, chmod.PreviousKnown));
        Assert.Equal(0x81A4u, chmod.PreviousMode); // 0644 before

        await _writer.DoAsync($"delete {b}");
        var deleted = Assert.IsType<FileEvent>(Assert.Single(await UntilBarrierAsync()));
        Assert.Equal((FileEventKind.Deleted, b, (uint)_writer.Pid), (deleted.Kind, deleted.Path, deleted.Actor.Pid));

        Assert.True(watch.Pipeline.Counters.Coalesced >= 2); // the create's own close, the write before its close

        // The window file.snapshot answers with: each event numbered once, in order, within the pipeline's run.
        var sequences = watch.Pipeline.Recent().Events.Select(e => e.Sequence).ToList();
        Assert.Equal(sequences.Order().Distinct(), sequences);
        Assert.Contains(deleted.Sequence, sequences);
    }

    [RootFact]
    public async Task A_write_under_an_integrity_root_gives_both_hashes_and_the_writer()
    {
        Directory.CreateDirectory(_fs.PathOf("integrity"));
        var target = _fs.PathOf("integrity/authorized_keys");
        File.WriteAllText(target, "old");
        var watch = Start();
        await watch.Pipeline.Hasher.BaselineDone.Task.WaitAsync(Patience);

        await _writer.DoAsync($"write {target} new");
        var integrity = await NextAsync<FileIntegrity>(i => i.Path == target);
        Assert.Equal((Sha("old"), Sha("oldnew"), true, IntegrityTrigger.Event), (integrity.Sha256Before, integrity.Sha256After, integrity.BeforeKnown, integrity.Trigger));
        Assert.Equal((uint)_writer.Pid, integrity.Actor.Pid);
    }

    [RootFact]
    public async Task Ten_thousand_creates_are_each_published_or_counted_with_a_bulk_summary_naming_the_process()
    {
        var watch = Start(s => s.BulkThreshold = 1000);
        var dir = _fs.PathOf("burst");
        Directory.CreateDirectory(dir);
        await UntilBarrierAsync();

        await _writer.DoAsync($"burst {dir} 10000");
        var seen = await UntilBarrierAsync();
        var created = seen.OfType<FileEvent>().Count(e => e.Kind == FileEventKind.Created && e.Path.StartsWith(dir + "/", StringComparison.Ordinal));
        var bulk = Assert.Single(seen.OfType<FileBulk>());
        Assert.Equal(((uint)_writer.Pid, "/usr/bin/perl", false, 1001UL), (bulk.Actor.Pid, bulk.Actor.Executable, bulk.Final, bulk.Events));
        Assert.Equal(1000, created);
        Assert.Equal(9000, watch.Pipeline.Counters.BulkSuppressed);
        Assert.Equal(0, watch.Pipeline.Counters.RateLimited + watch.Pipeline.Counters.QueueFull + watch.Pipeline.Counters.Overflows);

        // The window ends: the final summary has the totals.
        _time.Advance(TimeSpan.FromSeconds(61));
        watch.Pipeline.Tick();
        var final = await NextAsync<FileBulk>(b => b.Final);
        Assert.Equal((10000UL, 10000UL, 1000UL, 9000UL), (final.Events, final.Created, final.Published, final.Suppressed));
    }

    [RootFact]
    public async Task A_forced_overflow_is_counted_and_followed_by_a_rescan_that_finds_the_lost_change()
    {
        var limit = int.Parse(File.ReadAllText("/proc/sys/fs/fanotify/max_queued_events").Trim(), System.Globalization.CultureInfo.InvariantCulture);
        Directory.CreateDirectory(_fs.PathOf("integrity"));
        var target = _fs.PathOf("integrity/sshd_config");
        File.WriteAllText(target, "before");
        var watch = Start(s => s.BulkSuppress = false);
        await watch.Pipeline.Hasher.BaselineDone.Task.WaitAsync(Patience);
        await UntilBarrierAsync();

        // The reader is held while more changes are made than the kernel's queue holds; the last one
        // (the integrity file) is surely among the lost. A change after the reset wakes the reader, which
        // reads it and comes round to the gate: only once it is held there is the queue left to fill (a
        // reader still waiting on the descriptor would take a whole buffer of the burst first).
        watch.Source.Gate.Reset();
        new FileStream(_fs.PathOf("wake"), FileMode.CreateNew).Dispose();
        Assert.True(await Task.Run(() => watch.Source.Held.Wait(Patience)), "the reader did not come round to the gate");
        var dir = _fs.PathOf("flood");
        Directory.CreateDirectory(dir);
        await _writer.DoAsync($"burst {dir} {limit + 100}");
        await _writer.DoAsync($"write {target} +after");
        watch.Source.Gate.Set();

        var overflow = await NextAsync<FileAnomaly>(a => a.Kind == AnomalyKind.QueueOverflow);
        Assert.Equal(1UL, overflow.Count);
        var rescanned = await NextAsync<FileIntegrity>(i => i.Path == target);
        Assert.Equal((IntegrityTrigger.Rescan, Sha("before"), Sha("before+after")), (rescanned.Trigger, rescanned.Sha256Before, rescanned.Sha256After));
        Assert.Equal(1, watch.Pipeline.Counters.Overflows);
        Assert.Equal(1, watch.Pipeline.Hasher.Rescans);
    }

    [RootFact]
    public async Task The_inotify_fallback_reports_changes_and_says_it_has_no_process()
    {
        var watch = Start(s => s.Source = "inotify");
        Assert.StartsWith("inotify", watch.SourceStatus, StringComparison.Ordinal);
        Assert.Contains("no process attribution", watch.SourceStatus, StringComparison.Ordinal);
        var a = _fs.PathOf("i.txt");
        await _writer.DoAsync($"create {a}");
        await _writer.DoAsync($"rename {a} {a}.2");
        var seen = (await UntilBarrierAsync()).OfType<FileEvent>().ToList();
        Assert.Equal([(FileEventKind.Created, a, ""), (FileEventKind.Moved, a, a + ".2")], seen.Select(e => (e.Kind, e.Path, e.NewPath)));
        Assert.All(seen, e => Assert.Equal((0u, Attribution.NotAvailable, "inotify"), (e.Actor.Pid, e.Actor.Attribution, e.Source)));
    }

    [RootFact]
    public async Task Own_writes_are_counted_not_published_and_globs_change_live()
    {
        var own = _fs.PathOf("own.txt");
        var watch = Start(self: new HashSet<int> { Environment.ProcessId, 1 });
        new FileStream(own, FileMode.CreateNew).Dispose();
        var other = _fs.PathOf("other.txt");
        await _writer.DoAsync($"create {other}");
        var e = await NextAsync<FileEvent>(_ => true);
        Assert.Equal(other, e.Path); // own.txt's create and close came first, and were excluded
        Assert.Equal(2, watch.Pipeline.Counters.SelfExcluded); // its create and its close

        var next = watch.Settings.Clone();
        var errors = new List<string>();
        next.Apply([new("exclude", _fs.Root + "/skip/**")], errors, atStart: false);
        Assert.Empty(errors);
        watch.Reconfigure(next);
        Directory.CreateDirectory(_fs.PathOf("skip"));
        await _writer.DoAsync($"create {_fs.PathOf("skip/x")}");
        await _writer.DoAsync($"create {_fs.PathOf("kept")}");
        var created = await NextAsync<FileEvent>(_ => true);
        Assert.Equal(_fs.PathOf("kept"), created.Path);
        Assert.True(watch.Pipeline.Counters.Filtered >= 2); // skip itself and skip/x
    }

    public void Dispose()
    {
        _writer.Dispose();
        _watch?.Dispose();
        _fs.Dispose();
    }
}
