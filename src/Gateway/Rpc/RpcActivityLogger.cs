using DaemonEye.Configuration;
using DaemonEye.Gateway.Metrics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DaemonEye.Gateway.Rpc;

/// <summary>
/// The information-level record of RPC traffic: every <c>rpc.activity_log_interval_seconds</c>, one
/// line with the calls, the rate and the failures since the last line (nothing when there were
/// none). Each call's own line is at debug (<c>rpc.enable_correlation_tracking</c>), so a benchmark
/// of hundreds of thousands of calls costs a line a minute, not a line a call.
/// </summary>
internal sealed partial class RpcActivityLogger(
    IAgentRpc rpc,
    RpcMetrics metrics,
    IOptions<RpcOptions> options,
    TimeProvider time,
    ILogger<RpcActivityLogger> logger) : IHostedService, IAsyncDisposable
{
    private ITimer? _timer;
    private Sample _last;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        var seconds = options.Value.ActivityLogIntervalSeconds;
        if (seconds > 0)
        {
            _last = Take();
            var interval = TimeSpan.FromSeconds(seconds);
            _timer = time.CreateTimer(_ => Report(), null, interval, interval);
        }

        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_timer is not null)
        {
            await _timer.DisposeAsync();
        }
    }

    public ValueTask DisposeAsync() => _timer?.DisposeAsync() ?? ValueTask.CompletedTask;

    /// <summary>Logs the line for the interval just ended, if anything happened in it.</summary>
    internal void Report()
    {
        var now = Take();
        var before = _last;
        _last = now;
        var requests = now.Requests - before.Requests;
        var errors = now.Errors - before.Errors;
        if (requests == 0 && errors == 0)
        {
            return;
        }

        var seconds = Math.Max(0.001, (now.At - before.At).TotalSeconds);
        LogActivity(logger, seconds, requests, requests / seconds, now.Responses - before.Responses, errors,
            now.Timeouts - before.Timeouts, now.Rejected - before.Rejected, now.CommunicationErrors - before.CommunicationErrors, now.Pending);
    }

    private Sample Take()
    {
        var s = rpc.Statistics;
        return new Sample(time.GetUtcNow(), s.Requests, s.Responses, metrics.ErrorsTotal, s.Timeouts, s.Rejected, s.CommunicationErrors, s.Pending);
    }

    private readonly record struct Sample(DateTimeOffset At, long Requests, long Responses, long Errors, long Timeouts, long Rejected, long CommunicationErrors, int Pending);

    [LoggerMessage(EventId = 3010, Level = LogLevel.Information, Message = "RPC in the last {Seconds:0.#} s: {Requests} call(s) ({Rate:0.#}/s), {Responses} response(s), {Failed} failed ({Timeouts} timed out, {Rejected} rejected, {CommunicationErrors} communication errors); {Pending} pending")]
    private static partial void LogActivity(ILogger logger, double seconds, long requests, double rate, long responses, long failed, long timeouts, long rejected, long communicationErrors, int pending);
}
