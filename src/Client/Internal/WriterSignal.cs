using System.Threading.Tasks.Sources;

namespace DaemonEye.Client.Internal;

/// <summary>
/// The writer loop's wake-up: one waiter (the loop), released by whoever gives it work. A release
/// that comes before the wait is kept for it. Reusable, and it is its own cancellation callback's
/// state, so parking and waking the writer allocates nothing (a <c>SemaphoreSlim.WaitAsync</c>
/// allocates a task per wait, which under load is a wait per batch).
/// </summary>
internal sealed class WriterSignal : IValueTaskSource
{
    private const int Idle = 0;
    private const int Waiting = 1;
    private const int Released = 2;

    private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = true };
    private CancellationTokenRegistration _cancellation;
    private int _state;

    /// <summary>Completes at the next <see cref="Release"/> (at once if one came since the last wait), or throws when cancelled.</summary>
    public ValueTask WaitAsync(CancellationToken cancellationToken)
    {
        if (Interlocked.CompareExchange(ref _state, Idle, Released) == Released)
        {
            return ValueTask.CompletedTask;
        }

        _core.Reset();
        if (Interlocked.CompareExchange(ref _state, Waiting, Idle) != Idle)
        {
            Volatile.Write(ref _state, Idle); // released meanwhile: consumed here
            return ValueTask.CompletedTask;
        }

        if (cancellationToken.CanBeCanceled)
        {
            _cancellation = cancellationToken.UnsafeRegister(static (state, token) =>
            {
                var signal = (WriterSignal)state!;
                if (Interlocked.CompareExchange(ref signal._state, Idle, Waiting) == Waiting)
                {
                    signal._core.SetException(new OperationCanceledException(token));
                }
            }, this);
        }

        return new ValueTask(this, _core.Version);
    }

    /// <summary>Wakes the waiting loop, or lets its next wait complete at once.</summary>
    public void Release()
    {
        while (true)
        {
            switch (Volatile.Read(ref _state))
            {
                case Waiting:
                    if (Interlocked.CompareExchange(ref _state, Idle, Waiting) == Waiting)
                    {
                        _core.SetResult(true);
                        return;
                    }

                    break;
                case Idle:
                    if (Interlocked.CompareExchange(ref _state, Released, Idle) == Idle)
                    {
                        return;
                    }

                    break;
                default:
                    return;
            }
        }
    }

    public void GetResult(short token)
    {
        _cancellation.Dispose();
        _cancellation = default;
        _core.GetResult(token);
    }

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
