using Microsoft.Data.Sqlite;

namespace DaemonEye.Gateway.Durability;

/// <summary>
/// Appends, with group commit: the batches of every connection go through one writer, which
/// commits whatever is pending in one transaction. An append that finds the writer free commits
/// on the caller's thread at once (no added delay when idle); one that finds it busy joins the
/// queue, and when the commit under way ends, everything queued meanwhile is committed together
/// by one thread-pool work item (natural batching when busy: one commit, one WAL write and, with
/// fsync <c>batch</c>, one fsync for the whole group).
/// </summary>
/// <remarks>
/// A group keeps the order in which its batches were queued; each batch's messages are numbered
/// consecutively (one row each, DurableLog.Schema.cs), so a batch is never split or interleaved.
/// A group's transaction is atomic: when SQLite refuses it (disk full, I/O error), none of its
/// batches is logged, and each is refused and counted on its own (its publisher is told, with its
/// topic and count).
/// </remarks>
public sealed partial class DurableLog
{
    /// <summary>Batches one group commit takes at most; the rest wait for the next.</summary>
    private const int MaxGroupBatches = 1024;

    private readonly Lock _queueGate = new();
    private readonly Queue<QueuedAppend> _queue = new(); // under _queueGate
    private bool _writing; // under _queueGate: a commit is under way (a caller's own, or the drain); appends queue behind it
    private long _groupCommits;
    private long _groupedBatches;

    /// <summary>Commits of more than one batch since start-up.</summary>
    internal long GroupCommits => Interlocked.Read(ref _groupCommits);

    /// <summary>Batches that were committed in a group of more than one.</summary>
    internal long GroupedBatches => Interlocked.Read(ref _groupedBatches);

    /// <summary>
    /// Appends the messages of <paramref name="batch"/> and returns the sequence of the first, once
    /// they are committed: in the log, on disk per durability.fsync. Completes at once (synchronously)
    /// when the writer was free. On failure nothing of the batch is in the log and the refusal is
    /// counted. The batch's buffers must stay unchanged until the task completes.
    /// </summary>
    /// <exception cref="DurableLogUnavailableException">The log could not take the batch (disk full, I/O error).</exception>
    public ValueTask<ulong> AppendAsync(Grains.PublishBatch batch)
    {
        QueuedAppend? queued = null;
        lock (_queueGate)
        {
            if (_writing)
            {
                queued = new QueuedAppend(batch);
                _queue.Enqueue(queued);
            }
            else
            {
                _writing = true;
            }
        }

        if (queued is not null)
        {
            return new ValueTask<ulong>(queued.Task);
        }

        try
        {
            return new ValueTask<ulong>(CommitOne(batch));
        }
        catch (Exception e) when (e is DurableLogUnavailableException or ObjectDisposedException)
        {
            return ValueTask.FromException<ulong>(e);
        }
        finally
        {
            ReleaseWriter();
        }
    }

    /// <summary><see cref="AppendAsync"/>, waiting for the commit (for callers with no loop to return to: tools, benchmarks, tests).</summary>
    /// <exception cref="DurableLogUnavailableException">The log could not take the batch (disk full, I/O error).</exception>
    public ulong Append(Grains.PublishBatch batch)
    {
        var appended = AppendAsync(batch);
        return appended.IsCompleted ? appended.GetAwaiter().GetResult() : appended.AsTask().GetAwaiter().GetResult();
    }

    /// <summary>
    /// Holds the writer as a commit under way does, until the result is disposed: appends meanwhile
    /// queue, and are committed as one group when it is released (tests of grouping and of refusals).
    /// </summary>
    internal IDisposable HoldWriter()
    {
        lock (_queueGate)
        {
            if (_writing)
            {
                throw new InvalidOperationException("the writer is busy");
            }

            _writing = true;
        }

        return new WriterHold(this);
    }

    /// <summary>One batch committed on its own, on the caller's thread.</summary>
    private ulong CommitOne(Grains.PublishBatch batch)
    {
        var now = UnixNanos(_clock.GetUtcNow());
        var count = batch.Count;
        var ends = batch.Ends.AsSpan(0, count);
        var bytes = count == 0 ? 0 : ends[^1];
        ulong first;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            first = _last + 1;
            if (count == 0)
            {
                return first;
            }

            try
            {
                _insert.Execute((long)first, batch.Topic, now, ends, batch.Buffer.AsSpan(0, bytes));
            }
            catch (SqliteException e)
            {
                throw Refuse(batch, e, 1);
            }

            Logged(first, count, bytes, WalPages(bytes, count));
        }

        return first;
    }

    /// <summary>
    /// Lets the next appends in: hands what queued meanwhile to one work item that commits it
    /// (not to this caller, whose own publish is done), or frees the writer.
    /// </summary>
    private void ReleaseWriter()
    {
        lock (_queueGate)
        {
            if (_queue.Count == 0)
            {
                _writing = false;
                return;
            }
        }

        ThreadPool.UnsafeQueueUserWorkItem(static log => log.Drain(), this, preferLocal: false);
    }

    /// <summary>Commits what is queued, a group at a time, until the queue is empty; then frees the writer.</summary>
    private void Drain()
    {
        var group = new List<QueuedAppend>();
        while (true)
        {
            lock (_queueGate)
            {
                while (group.Count < MaxGroupBatches && _queue.TryDequeue(out var next))
                {
                    group.Add(next);
                }

                if (group.Count == 0)
                {
                    _writing = false;
                    return;
                }
            }

            CommitGroup(group);
            group.Clear();
        }
    }

    /// <summary>Commits <paramref name="group"/> in one transaction, in order, and completes each append with its first sequence or its refusal.</summary>
    private void CommitGroup(List<QueuedAppend> group)
    {
        if (group.Count == 1)
        {
            var only = group[0];
            try
            {
                only.TrySetResult(CommitOne(only.Batch));
            }
            catch (Exception e) when (e is DurableLogUnavailableException or ObjectDisposedException)
            {
                only.TrySetException(e);
            }

            return;
        }

        var now = UnixNanos(_clock.GetUtcNow());
        var firsts = new ulong[group.Count];
        lock (_gate)
        {
            if (_disposed)
            {
                var disposed = new ObjectDisposedException(nameof(DurableLog));
                foreach (var append in group)
                {
                    append.TrySetException(disposed);
                }

                return;
            }

            var next = _last + 1;
            long messages = 0, bytes = 0, pages = 0;
            try
            {
                _insert.Begin();
                for (var i = 0; i < group.Count; i++)
                {
                    var batch = group[i].Batch;
                    firsts[i] = next;
                    if (batch.Count == 0)
                    {
                        continue;
                    }

                    var ends = batch.Ends.AsSpan(0, batch.Count);
                    _insert.Execute((long)next, batch.Topic, now, ends, batch.Buffer.AsSpan(0, ends[^1]));
                    next += (ulong)batch.Count;
                    messages += batch.Count;
                    bytes += ends[^1];
                    pages += WalPages(ends[^1], batch.Count);
                }

                _insert.Commit();
            }
            catch (SqliteException e)
            {
                _insert.RollbackIfOpen();
                foreach (var append in group)
                {
                    append.TrySetException(Refuse(append.Batch, e, group.Count));
                }

                return;
            }

            if (messages > 0)
            {
                Logged(next - (ulong)messages, messages, bytes, pages);
            }
        }

        Interlocked.Increment(ref _groupCommits);
        Interlocked.Add(ref _groupedBatches, group.Count);
        for (var i = 0; i < group.Count; i++)
        {
            group[i].TrySetResult(firsts[i]);
        }
    }

    /// <summary>Under the gate, after a commit: the log's totals, the waiting readers, the checkpointer.</summary>
    private void Logged(ulong first, long messages, long bytes, long pages)
    {
        _last = first + (ulong)messages - 1;
        if (_first == 0)
        {
            _first = first;
        }

        _messages += messages;
        _bytes += bytes;
        var appended = _appended;
        _appended = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        appended.TrySetResult();
        _checkpointer?.Written(pages);
    }

    /// <summary>Counts, logs and describes a refused batch (one of <paramref name="group"/> committed together).</summary>
    private DurableLogUnavailableException Refuse(Grains.PublishBatch batch, SqliteException e, int group)
    {
        Interlocked.Add(ref _refused, batch.Count);
        Volatile.Write(ref _lastRefusalTicks, _clock.GetUtcNow().UtcTicks);
        LogAppendFailed(_logger, batch.Topic, batch.Count, e.SqliteErrorCode, e.Message);
        var together = group > 1 ? $", committed together with {group - 1} other batch(es)" : "";
        return new DurableLogUnavailableException(
            $"the durable log could not take {batch.Count} messages on '{batch.Topic}'{together} (SQLite error {e.SqliteErrorCode}: {e.Message}); they were neither logged nor delivered", e);
    }

    /// <summary>
    /// About how many WAL pages a row adds (its data and ends over ~4 KiB pages, its leaf and its
    /// time-index leaf): what tells the checkpointer that the WAL has grown, between its timer's
    /// rounds. The checkpoint itself reports the real size.
    /// </summary>
    private static long WalPages(long bytes, int count) => 2 + ((bytes + (4L * count)) / 4000);

    private sealed class QueuedAppend(Grains.PublishBatch batch) : TaskCompletionSource<ulong>(TaskCreationOptions.RunContinuationsAsynchronously)
    {
        public Grains.PublishBatch Batch { get; } = batch;
    }

    private sealed class WriterHold(DurableLog log) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0)
            {
                log.ReleaseWriter();
            }
        }
    }
}
