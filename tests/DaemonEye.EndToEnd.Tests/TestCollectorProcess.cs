using System.Diagnostics;
using System.Globalization;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// The real test-collector (tests/TestCollector) as a child process, registered with an agent
/// under <paramref name="id"/>. Its supervisor pid is this test process, so it stops by itself if
/// the tests die; dispose kills it.
/// </summary>
internal sealed class TestCollectorProcess : IDisposable
{
    private const string RegisteredMarker = "registered with the agent";
    private readonly Process _process;
    private readonly List<string> _lines = [];
    private readonly TaskCompletionSource _registered = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<(string Marker, TaskCompletionSource Seen)> _waits = [];

    private TestCollectorProcess(string socketPath, string id, string[] args)
    {
        Id = id;
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = Path.GetTempPath(),
        };
        start.ArgumentList.Add(Paths.TestCollectorDll);
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        start.Environment["DAEMONEYE_BROKER__SOCKET_PATH"] = socketPath;
        start.Environment["DAEMONEYE_COLLECTOR_ID"] = id;
        start.Environment["DAEMONEYE_SUPERVISOR_PID"] = Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
        start.Environment["DAEMONEYE_HEARTBEAT_INTERVAL_MS"] = "1000";
        // Started by the test, not the agent: it proves its id with a token (see TestTokens).
        start.Environment["DAEMONEYE_REGISTRATION_TOKEN"] = TestTokens.For(id);
        _process = new Process { StartInfo = start, EnableRaisingEvents = true };
        _process.OutputDataReceived += (_, e) => OnLine(e.Data);
        _process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        ProcessExit.OnExited(_process, _ => _registered.TrySetException(new InvalidOperationException($"test-collector {id} exited before registering:\n{Log}")));
    }

    public string Id { get; }

    public int Pid => _process.Id;

    public string Log
    {
        get
        {
            lock (_lines)
            {
                return string.Join('\n', _lines);
            }
        }
    }

    /// <summary>Starts the collector and waits until it has registered with the agent.</summary>
    public static async Task<TestCollectorProcess> StartAsync(string socketPath, string id, params string[] args)
    {
        var collector = new TestCollectorProcess(socketPath, id, args);
        collector._process.Start();
        collector._process.BeginOutputReadLine();
        collector._process.BeginErrorReadLine();
        try
        {
            await collector._registered.Task.WaitAsync(TimeSpan.FromSeconds(60));
        }
        catch
        {
            collector.Dispose();
            throw;
        }

        return collector;
    }

    /// <summary>Completes when a line containing <paramref name="marker"/> appears from now on (call it before causing the line).</summary>
    public Task NextLineAsync(string marker)
    {
        var seen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_lines)
        {
            _waits.Add((marker, seen));
        }

        return seen.Task;
    }

    /// <summary>Runs a collector that is expected to end by itself; returns its exit code and output.</summary>
    public static async Task<(int Code, string Output)> RunToExitAsync(string socketPath, string id, TimeSpan timeout, params string[] args)
    {
        using var collector = new TestCollectorProcess(socketPath, id, args);
        collector._process.Start();
        collector._process.BeginOutputReadLine();
        collector._process.BeginErrorReadLine();
        var code = await collector.WaitForExitAsync(timeout);
        collector._process.WaitForExit(); // drains the redirected output
        return (code, collector.Log);
    }

    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(cts.Token);
        return _process.ExitCode;
    }

    /// <summary>SIGKILL.</summary>
    public async Task KillAsync()
    {
        _process.Kill();
        await _process.WaitForExitAsync();
    }

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }

        List<TaskCompletionSource> ready = [];
        lock (_lines)
        {
            _lines.Add(line);
            _waits.RemoveAll(w =>
            {
                if (line.Contains(w.Marker, StringComparison.Ordinal))
                {
                    ready.Add(w.Seen);
                    return true;
                }

                return false;
            });
        }

        ready.ForEach(r => r.TrySetResult());
        if (line.Contains(RegisteredMarker, StringComparison.Ordinal))
        {
            _registered.TrySetResult();
        }
    }

    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill();
                _process.WaitForExit();
            }
        }
        catch (InvalidOperationException)
        {
        }

        _process.Dispose();
    }
}
