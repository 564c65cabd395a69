using System.Diagnostics;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// Debian's mosquitto_sub or mosquitto_pub (package mosquitto-clients, installed by .ci/run) run as a
/// real MQTT client of the agent: stdout lines collected as they come, stderr kept, killed on dispose.
/// </summary>
internal sealed class MosquittoProcess : IDisposable
{
    private readonly Process _process;
    private readonly List<string> _lines = [];
    private readonly List<string> _errors = [];
    private readonly List<(Func<IReadOnlyList<string>, bool> Done, TaskCompletionSource Seen)> _waits = [];

    private MosquittoProcess(string tool, IEnumerable<string> args)
    {
        var path = Find(tool);
        var start = new ProcessStartInfo(path) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        _process = new Process { StartInfo = start, EnableRaisingEvents = true };
        _process.OutputDataReceived += (_, e) => OnLine(e.Data);
        _process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (_errors)
                {
                    _errors.Add(e.Data);
                }
            }
        };
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public static MosquittoProcess Sub(params string[] args) => new("mosquitto_sub", args);

    public static MosquittoProcess Pub(params string[] args) => new("mosquitto_pub", args);

    /// <summary>Runs mosquitto_pub to its end: exit code and stderr.</summary>
    public static async Task<(int Code, string Stderr)> PublishAsync(CancellationToken cancellationToken, params string[] args)
    {
        using var pub = Pub(args);
        return (await pub.WaitForExitAsync(cancellationToken), pub.Stderr);
    }

    public IReadOnlyList<string> Lines
    {
        get
        {
            lock (_lines)
            {
                return [.. _lines];
            }
        }
    }

    public string Stderr
    {
        get
        {
            lock (_errors)
            {
                return string.Join('\n', _errors);
            }
        }
    }

    /// <summary>Completes once the lines printed so far satisfy <paramref name="done"/>.</summary>
    public Task WaitForLinesAsync(Func<IReadOnlyList<string>, bool> done, CancellationToken cancellationToken)
    {
        var seen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_lines)
        {
            if (done(_lines))
            {
                return Task.CompletedTask;
            }

            _waits.Add((done, seen));
        }

        return seen.Task.WaitAsync(cancellationToken);
    }

    public async Task<int> WaitForExitAsync(CancellationToken cancellationToken)
    {
        await _process.WaitForExitAsync(cancellationToken);
        return _process.ExitCode;
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

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_lines)
        {
            _lines.Add(line);
            foreach (var wait in _waits.Where(w => w.Done(_lines)).ToList())
            {
                _waits.Remove(wait);
                wait.Seen.TrySetResult();
            }
        }
    }

    private static string Find(string tool)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin").Split(':'))
        {
            var candidate = Path.Combine(dir, tool);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        throw new InvalidOperationException($"{tool} is not installed: the MQTT tests run Debian's mosquitto clients (apt-get install mosquitto-clients; .ci/run installs it)");
    }
}
