using System.Diagnostics;
using System.Globalization;
using DaemonEye.Configuration;
using DaemonEye.Gateway;
using DaemonEye.Gateway.Collectors;
using DaemonEye.Gateway.Rpc;
using DaemonEye.Logging;
using DaemonEye.Protocol.Collector.V1;
using DaemonEye.Protocol.V1;
using DaemonEye.Topics;
using Google.Protobuf;
using Microsoft.Extensions.Logging;

namespace DaemonEye.Supervision;

/// <summary>What a runner needs from the rest of the agent.</summary>
internal sealed record SupervisorContext(
    ProcessManagerOptions Options,
    ProcessLauncher Launcher,
    IAgentRpc Rpc,
    CollectorDirectory Directory,
    IBusPublisher Publisher,
    TimeProvider Time,
    ILogger Logger,
    IReadOnlyDictionary<string, string> ChildEnvironment);

/// <summary>
/// Supervises one configured collector, like a systemd unit with Restart=on-failure: start waits
/// for the collector to register on the bus; stop asks over RPC, then SIGTERM, then SIGKILL; an
/// unexpected exit restarts it after an exponential backoff, until max_restart_attempts within
/// the restart window, when it is Failed and stays down. Operations are serialised by one gate.
/// Its state and restart count live in the <see cref="CollectorDirectory"/>; the runner holds only the process.
/// </summary>
internal sealed partial class CollectorRunner(CollectorDefinition definition, SupervisorContext context)
{
    public const string LifecycleTopic = WellKnownTopics.CollectorLifecycle;
    public const string LifecycleContentType = "application/x-protobuf; messageType=daemoneye.collector.v1.LifecycleEvent";

    private readonly SemaphoreSlim _gate = new(1, 1);
    private Process? _process;
    private bool _stopRequested;
    private CancellationTokenSource? _pendingRestart;
    private TaskCompletionSource<CollectorPresence>? _registration;
    private Process? _killedForStartupTimeout;
    private volatile bool _recovering;

    public CollectorDefinition Definition => definition;

    public string Id => definition.Id;

    /// <summary>Exited unexpectedly and not running again yet (restart pending or not registered): crash-looping, for health.</summary>
    public bool IsRecovering => _recovering;

    /// <summary>Pid of the running process, or 0.</summary>
    public int Pid => _process is { HasExited: false } p ? p.Id : 0;

    private ProcessManagerOptions Options => context.Options;

    /// <summary>Starts the collector unless it runs; returns a sentence for the operator.</summary>
    public async Task<string> StartAsync(string reason, CorrelationMetadata? parent, CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken);
        try
        {
            if (_process is { HasExited: false } running)
            {
                return $"collector '{Id}' is already running (pid {running.Id})";
            }

            _stopRequested = false;
            _recovering = false;
            CancelPendingRestart();
            context.Directory.ResetRestartWindow(Id);
            return await LaunchAsync(reason, parent);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Stops the collector: Stop RPC, SIGTERM after the graceful timeout, SIGKILL after the force timeout.</summary>
    public async Task<string> StopAsync(bool graceful, string reason, CorrelationMetadata? parent, CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken);
        try
        {
            _stopRequested = true;
            _recovering = false;
            CancelPendingRestart();
            var process = _process;
            if (process is null || process.HasExited)
            {
                _process = null;
                if (context.Directory.Find(Id)?.State is not (CollectorLifecycle.Stopped or CollectorLifecycle.Failed))
                {
                    await TransitionAsync(CollectorLifecycle.Stopped, 0, reason, parent);
                }

                return $"collector '{Id}' is not running";
            }

            var pid = process.Id;
            await TransitionAsync(CollectorLifecycle.Stopping, pid, reason, parent);
            var exited = process.WaitForExitAsync(CancellationToken.None);
            var how = await ShutDownAsync(process, pid, exited, graceful, parent);
            _process = null;
            var code = process.ExitCode;
            await TransitionAsync(CollectorLifecycle.Stopped, 0, $"{how}; exit code {code}", parent, code);
            return $"collector '{Id}' stopped ({how}, exit code {code})";
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task<string> ShutDownAsync(Process process, int pid, Task exited, bool graceful, CorrelationMetadata? parent)
    {
        var stopwatch = Stopwatch.StartNew();
        if (!graceful)
        {
            // Not graceful: no request, no graceful timeout; SIGTERM now, SIGKILL after the force timeout.
            Signals.Send(pid, Signals.SigTerm);
            if (await ExitedWithin(exited, Options.ForceShutdownTimeout))
            {
                return "terminated with SIGTERM (stop without graceful)";
            }

            LogEscalating(context.Logger, Id, pid, "SIGKILL", Options.ForceShutdownTimeoutSeconds);
            Signals.Send(pid, Signals.SigKill);
            await exited;
            return "killed with SIGKILL after the force timeout";
        }

        if (context.Rpc.FindCollector(Id) is not null)
        {
            var response = await context.Rpc.CallAsync(Id, RpcOperation.Stop, new StopRequest { Graceful = graceful }.ToByteString(), Options.GracefulShutdownTimeout, parent);
            if (response.Status != RpcStatus.Ok)
            {
                LogStopRpcFailed(context.Logger, Id, response.Error?.Kind ?? RpcErrorKind.Unspecified, response.Error?.Message ?? string.Empty);
            }
        }

        var left = Options.GracefulShutdownTimeout - stopwatch.Elapsed;
        if (await ExitedWithin(exited, left))
        {
            return "exited on request";
        }

        LogEscalating(context.Logger, Id, pid, "SIGTERM", Options.GracefulShutdownTimeoutSeconds);
        Signals.Send(pid, Signals.SigTerm);
        if (await ExitedWithin(exited, Options.ForceShutdownTimeout))
        {
            return "terminated with SIGTERM after the graceful timeout";
        }

        LogEscalating(context.Logger, Id, pid, "SIGKILL", Options.ForceShutdownTimeoutSeconds);
        Signals.Send(pid, Signals.SigKill);
        await exited;
        return "killed with SIGKILL after the force timeout";
    }

    private async Task<bool> ExitedWithin(Task exited, TimeSpan time)
    {
        if (exited.IsCompleted)
        {
            return true;
        }

        if (time <= TimeSpan.Zero)
        {
            return false;
        }

        using var cancel = new CancellationTokenSource();
        var delay = Task.Delay(time, context.Time, cancel.Token);
        var first = await Task.WhenAny(exited, delay);
        await cancel.CancelAsync();
        return first == exited;
    }

    /// <summary>Spawns the process and waits (up to the start-up timeout) for it to register. Holds the gate.</summary>
    private async Task<string> LaunchAsync(string reason, CorrelationMetadata? parent)
    {
        await TransitionAsync(CollectorLifecycle.Starting, 0, reason, parent);
        var registration = new TaskCompletionSource<CollectorPresence>(TaskCreationOptions.RunContinuationsAsynchronously);
        _registration = registration;
        Process process;
        try
        {
            process = await context.Launcher.StartAsync(definition, context.ChildEnvironment);
        }
        catch (InvalidOperationException ex)
        {
            await TransitionAsync(CollectorLifecycle.Failed, 0, ex.Message, parent);
            return ex.Message;
        }

        _process = process;
        var pid = process.Id;
        await TransitionAsync(CollectorLifecycle.Starting, pid, $"{reason}; waiting for it to register on the bus", parent);
        var exited = process.WaitForExitAsync(CancellationToken.None);
        _ = WatchExitAsync(process, exited);

        using var cancel = new CancellationTokenSource();
        var timeout = Task.Delay(Options.StartupTimeout, context.Time, cancel.Token);
        var first = await Task.WhenAny(registration.Task, exited, timeout);
        await cancel.CancelAsync();
        if (first == registration.Task)
        {
            _recovering = false;
            await TransitionAsync(CollectorLifecycle.Running, pid, "registered on the bus", parent);
            return $"collector '{Id}' is running (pid {pid})";
        }

        if (first == exited)
        {
            return $"collector '{Id}' exited during start-up with code {process.ExitCode}";
        }

        LogStartupTimeout(context.Logger, Id, pid, Options.StartupTimeoutSeconds);
        _killedForStartupTimeout = process;
        Signals.Send(pid, Signals.SigKill);
        return $"collector '{Id}' did not register within process_manager.startup_timeout_seconds ({Options.StartupTimeoutSeconds} s); killed it";
    }

    /// <summary>Handles an exit the supervisor did not ask for: restart with backoff, or Failed.</summary>
    private async Task WatchExitAsync(Process process, Task exited)
    {
        await exited;
        await _gate.WaitAsync();
        try
        {
            if (!ReferenceEquals(_process, process))
            {
                return; // A stop already handled it.
            }

            _process = null;
            var code = process.ExitCode;
            var how = ReferenceEquals(_killedForStartupTimeout, process)
                ? string.Create(CultureInfo.InvariantCulture, $"did not register within {Options.StartupTimeoutSeconds} s and was killed")
                : code > 128 ? $"was killed by signal {code - 128}" : $"exited with code {code}";
            if (_stopRequested)
            {
                await TransitionAsync(CollectorLifecycle.Stopped, 0, how, null, code);
                return;
            }

            if (!Options.EnableAutoRestart)
            {
                _recovering = false;
                await TransitionAsync(CollectorLifecycle.Failed, 0, $"{how}; process_manager.enable_auto_restart is off", null, code);
                return;
            }

            if (!context.Directory.TryCountRestart(Id, Options.MaxRestartAttempts, Options.RestartWindow, out var attempt, out _))
            {
                _recovering = false;
                await TransitionAsync(CollectorLifecycle.Failed, 0,
                    string.Create(CultureInfo.InvariantCulture, $"{how} after {attempt} restarts within {Options.RestartWindowSeconds} s (process_manager.max_restart_attempts = {Options.MaxRestartAttempts}); not restarting it. Start it by hand: daemoneye-cli collectors start {Id}"),
                    null, code);
                return;
            }

            var delay = Options.BackoffFor(attempt);
            _recovering = true;
            LogUnexpectedExit(context.Logger, Id, how, attempt, Options.MaxRestartAttempts, delay.TotalSeconds);
            await TransitionAsync(CollectorLifecycle.Stopped, 0,
                string.Create(CultureInfo.InvariantCulture, $"{how}; restart {attempt} of {Options.MaxRestartAttempts} in {delay.TotalSeconds:0.###} s"), null, code);
            var pending = new CancellationTokenSource();
            _pendingRestart = pending;
            _ = RestartAfterAsync(delay, pending.Token);
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task RestartAfterAsync(TimeSpan delay, CancellationToken cancellationToken)
    {
        try
        {
            await Task.Delay(delay, context.Time, cancellationToken);
            await _gate.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            return;
        }

        try
        {
            if (!cancellationToken.IsCancellationRequested && !_stopRequested && _process is null)
            {
                await LaunchAsync("restarted after an unexpected exit", null);
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    private void CancelPendingRestart()
    {
        _pendingRestart?.Cancel();
        _pendingRestart?.Dispose();
        _pendingRestart = null;
    }

    /// <summary>The collector registered on the bus (called by the supervisor's presence observer).</summary>
    public void OnRegistered(CollectorPresence presence)
    {
        var pid = Pid;
        if (pid != 0 && presence.Pid != 0 && presence.Pid != pid)
        {
            LogPidMismatch(context.Logger, Id, presence.Pid, pid);
        }

        _registration?.TrySetResult(presence);
    }

    private async Task TransitionAsync(CollectorLifecycle state, int pid, string reason, CorrelationMetadata? parent, int exitCode = 0)
    {
        var transition = context.Directory.Transition(Id, state, pid, reason);
        if (transition.Before.State == state && transition.Before.Pid == pid)
        {
            return;
        }

        var lifecycle = new LifecycleEvent
        {
            CollectorId = Id,
            State = state.ToString(),
            PreviousState = transition.Before.State.ToString(),
            Pid = (uint)pid,
            RestartCount = (uint)transition.After.Restarts,
            Reason = reason,
            ExitCode = exitCode,
        };
        try
        {
            await context.Publisher.PublishAsync(LifecycleTopic, lifecycle.ToByteString(), LifecycleContentType, Correlation.ChildOf(parent));
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            LogLifecyclePublishFailed(context.Logger, Id, ex);
        }
    }

    [LoggerMessage(EventId = 4000, Level = LogLevel.Warning, Message = "Collector {CollectorId} (pid {Pid}) still running; sending {Signal} after {Seconds} s")]
    private static partial void LogEscalating(ILogger logger, string collectorId, int pid, string signal, double seconds);

    [LoggerMessage(EventId = 4001, Level = LogLevel.Warning, Message = "Collector {CollectorId}: Stop RPC failed ({Kind}): {Message}")]
    private static partial void LogStopRpcFailed(ILogger logger, string collectorId, RpcErrorKind kind, Untrusted message);

    [LoggerMessage(EventId = 4002, Level = LogLevel.Error, Message = "Collector {CollectorId} (pid {Pid}) did not register within {Seconds} s; killing it")]
    private static partial void LogStartupTimeout(ILogger logger, string collectorId, int pid, double seconds);

    [LoggerMessage(EventId = 4003, Level = LogLevel.Warning, Message = "Collector {CollectorId} registered from pid {RegisteredPid}, but the agent started pid {StartedPid}")]
    private static partial void LogPidMismatch(ILogger logger, string collectorId, int registeredPid, int startedPid);

    [LoggerMessage(EventId = 4005, Level = LogLevel.Warning, Message = "Collector {CollectorId} {How}; restart {Attempt} of {MaxAttempts} in {DelaySeconds:0.###} s")]
    private static partial void LogUnexpectedExit(ILogger logger, string collectorId, string how, int attempt, int maxAttempts, double delaySeconds);

    [LoggerMessage(EventId = 4004, Level = LogLevel.Warning, Message = "Collector {CollectorId}: could not publish its lifecycle event")]
    private static partial void LogLifecyclePublishFailed(ILogger logger, string collectorId, Exception exception);
}
