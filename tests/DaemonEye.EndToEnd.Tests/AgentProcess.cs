using System.Diagnostics;

[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// The real daemoneye-agent as a child process: its own temp directory (working directory, so no
/// config file is picked up) and socket path, started and awaited until it logs
/// "daemoneye-agent ready", killed on dispose.
/// </summary>
internal sealed class AgentProcess : IAsyncDisposable
{
    public static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(90);
    private readonly Process _process;
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<string> _log = [];

    private readonly List<(Func<string, bool> Match, TaskCompletionSource<string> Seen)> _waits = [];

    private AgentProcess(string directory, string socketPath, IReadOnlyDictionary<string, string> environment, IReadOnlyList<string>? args = null)
    {
        Directory = directory;
        SocketPath = socketPath;
        var start = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = directory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(Paths.AgentDll);
        foreach (var arg in args ?? [])
        {
            start.ArgumentList.Add(arg);
        }

        start.Environment["DAEMONEYE_BROKER__SOCKET_PATH"] = socketPath;
        // Each agent its own state (the durable log): as root the default, /var/lib/daemoneye, is one
        // directory that agents running in parallel would fight over. A test may still set its own.
        start.Environment["STATE_DIRECTORY"] = Path.Combine(directory, "state");
        foreach (var (key, value) in environment)
        {
            start.Environment[key] = value;
        }

        _process = new Process { StartInfo = start };
        _process.OutputDataReceived += (_, e) => OnLine(e.Data);
        _process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        _process.EnableRaisingEvents = true;
        ProcessExit.OnExited(_process, code => _ready.TrySetException(new InvalidOperationException($"daemoneye-agent exited with {code} before it was ready:\n{Log}")));
    }

    public string Directory { get; }

    public string SocketPath { get; }

    public string Log
    {
        get
        {
            lock (_log)
            {
                return string.Join('\n', _log);
            }
        }
    }

    /// <summary>Starts an agent in a fresh temp directory (or <paramref name="reuse"/>'s, same socket).</summary>
    public static async Task<AgentProcess> StartAsync(IReadOnlyDictionary<string, string>? environment = null, AgentProcess? reuse = null, IReadOnlyList<string>? args = null)
    {
        var directory = reuse?.Directory ?? System.IO.Directory.CreateTempSubdirectory("de-e2e-").FullName;
        var socket = reuse?.SocketPath ?? Path.Combine(directory, "run", "bus.sock");
        var agent = new AgentProcess(directory, socket, environment ?? new Dictionary<string, string>(), args);
        agent._process.Start();
        agent._process.BeginOutputReadLine();
        agent._process.BeginErrorReadLine();
        try
        {
            await agent._ready.Task.WaitAsync(StartTimeout);
        }
        catch
        {
            await agent.DisposeAsync();
            throw;
        }

        return agent;
    }

    /// <summary>Runs an agent that is expected to exit by itself (bad configuration); its exit code and output.</summary>
    public static async Task<(int Code, string Output)> RunToExitAsync(IReadOnlyDictionary<string, string>? environment, IReadOnlyList<string> args, TimeSpan timeout)
    {
        var directory = System.IO.Directory.CreateTempSubdirectory("de-e2e-").FullName;
        await using var agent = new AgentProcess(directory, Path.Combine(directory, "run", "bus.sock"), environment ?? new Dictionary<string, string>(), args);
        agent._process.Start();
        agent._process.BeginOutputReadLine();
        agent._process.BeginErrorReadLine();
        using var cts = new CancellationTokenSource(timeout);
        await agent._process.WaitForExitAsync(cts.Token);
        return (agent._process.ExitCode, agent.Log);
    }

    /// <summary>
    /// Completes with the first line from now on that <paramref name="match"/> accepts (call it before
    /// causing the line), or with an earlier one when <paramref name="includeEarlier"/>.
    /// </summary>
    public Task<string> WaitForLineAsync(Func<string, bool> match, bool includeEarlier = false)
    {
        var seen = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_log)
        {
            if (includeEarlier && _log.FirstOrDefault(match) is { } earlier)
            {
                seen.SetResult(earlier);
                return seen.Task;
            }

            _waits.Add((match, seen));
        }

        return seen.Task;
    }

    /// <summary>SIGTERM, then wait for a clean exit (the agent removes its socket).</summary>
    public async Task StopAsync()
    {
        using (var kill = Process.Start("kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
        {
            await kill.WaitForExitAsync();
        }

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await _process.WaitForExitAsync(timeout.Token);
    }

    public int ExitCode => _process.ExitCode;

    public int Pid => _process.Id;

    /// <summary>The IPC socket: ipc.sock beside the bus socket (the default).</summary>
    public string IpcSocketPath => Path.Combine(Path.GetDirectoryName(SocketPath)!, "ipc.sock");

    /// <summary>SIGKILL to the agent alone (not its children), and wait for it to be gone.</summary>
    public async Task KillAgentOnlyAsync()
    {
        _process.Kill(entireProcessTree: false);
        await _process.WaitForExitAsync();
    }

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_log)
        {
            _log.Add(line);
            foreach (var wait in _waits.Where(w => w.Match(line)).ToList())
            {
                _waits.Remove(wait);
                wait.Seen.TrySetResult(line);
            }
        }

        if (line.Contains("daemoneye-agent ready", StringComparison.Ordinal))
        {
            _ready.TrySetResult();
        }
    }

    /// <summary>Kills the agent if it still runs; the directory stays for a restart unless <paramref name="keepDirectory"/> is false.</summary>
    public async ValueTask DisposeAsync(bool keepDirectory)
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }
        }
        catch (InvalidOperationException)
        {
        }

        _process.Dispose();
        if (!keepDirectory)
        {
            try
            {
                System.IO.Directory.Delete(Directory, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    public ValueTask DisposeAsync() => DisposeAsync(keepDirectory: false);
}

/// <summary>Reporting a test's child process that exited on its own.</summary>
internal static class ProcessExit
{
    /// <summary>
    /// Calls <paramref name="report"/> with the exit code (or "unknown" when the process object has been
    /// disposed meanwhile) once <paramref name="process"/> has exited and its last lines of redirected
    /// output have been handled: the Exited event alone can come before them.
    /// </summary>
    public static void OnExited(Process process, Action<string> report) => process.Exited += (_, _) =>
    {
        string code;
        try
        {
            process.WaitForExit();
            code = process.ExitCode.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is InvalidOperationException or ObjectDisposedException)
        {
            code = "unknown";
        }

        report(code);
    };
}

/// <summary>Where the built agent and CLI are.</summary>
internal static class Paths
{
#if DEBUG
    private const string Configuration = "Debug";
#else
    private const string Configuration = "Release";
#endif

    public static string RepositoryRoot { get; } = FindRoot();

    public static string AgentDll => Path.Combine(RepositoryRoot, "src", "Silo", "bin", Configuration, "net10.0", "daemoneye-agent.dll");

    public static string CliDll => Path.Combine(RepositoryRoot, "src", "Cli", "bin", Configuration, "net10.0", "daemoneye-cli.dll");

    public static string TestCollectorDll => Path.Combine(RepositoryRoot, "tests", "TestCollector", "bin", Configuration, "net10.0", "test-collector.dll");

    public static string SocketProbeDll => Path.Combine(RepositoryRoot, "tests", "SocketProbe", "bin", Configuration, "net10.0", "socket-probe.dll");

    public static string ExampleCollectorDll => Path.Combine(RepositoryRoot, "src", "Collectors", "Example", "bin", Configuration, "net10.0", "example-collector.dll");

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "DaemonEye.Orleans.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"no DaemonEye.Orleans.sln above {AppContext.BaseDirectory}");
    }
}

/// <summary>The real daemoneye-cli as a child process.</summary>
internal sealed class CliProcess : IDisposable
{
    private readonly Process _process;
    private readonly List<string> _stdout = [];
    private readonly List<string> _stderr = [];
    private readonly TaskCompletionSource _stderrMarker = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<(Func<string, bool> Match, TaskCompletionSource<string> Seen)> _stdoutWaits = [];
    private readonly string? _marker;

    public CliProcess(string socketPath, string? stderrMarker, params string[] args)
    {
        _marker = stderrMarker;
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = Path.GetTempPath(),
        };
        start.ArgumentList.Add(Paths.CliDll);
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        start.Environment["DAEMONEYE_BROKER__SOCKET_PATH"] = socketPath;
        _process = new Process { StartInfo = start };
        _process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (_stdout)
                {
                    _stdout.Add(e.Data);
                    foreach (var wait in _stdoutWaits.Where(w => w.Match(e.Data)).ToList())
                    {
                        _stdoutWaits.Remove(wait);
                        wait.Seen.TrySetResult(e.Data);
                    }
                }
            }
        };
        _process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                return;
            }

            lock (_stderr)
            {
                _stderr.Add(e.Data);
            }

            if (_marker is not null && e.Data.Contains(_marker, StringComparison.Ordinal))
            {
                _stderrMarker.TrySetResult();
            }
        };
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public IReadOnlyList<string> Stdout
    {
        get
        {
            lock (_stdout)
            {
                return [.. _stdout];
            }
        }
    }

    public string Stderr
    {
        get
        {
            lock (_stderr)
            {
                return string.Join('\n', _stderr);
            }
        }
    }

    /// <summary>The first stdout line, printed so far or from now on, that <paramref name="match"/> accepts.</summary>
    public Task<string> StdoutLineAsync(Func<string, bool> match)
    {
        var seen = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_stdout)
        {
            if (_stdout.FirstOrDefault(match) is { } earlier)
            {
                seen.SetResult(earlier);
            }
            else
            {
                _stdoutWaits.Add((match, seen));
            }
        }

        return seen.Task;
    }

    public bool HasExited => _process.HasExited;

    /// <summary>Completes when the marker line appears on stderr.</summary>
    public Task Marker => _stderrMarker.Task;

    public async Task<int> WaitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(cts.Token);
        return _process.ExitCode;
    }

    public static async Task<(int Code, IReadOnlyList<string> Stdout, string Stderr)> RunAsync(string socketPath, TimeSpan timeout, params string[] args)
    {
        using var cli = new CliProcess(socketPath, null, args);
        var code = await cli.WaitAsync(timeout);
        return (code, cli.Stdout, cli.Stderr);
    }

    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }
        }
        catch (InvalidOperationException)
        {
        }

        _process.Dispose();
    }
}
