using System.Collections.Concurrent;
using System.Diagnostics;
using DaemonEye.Configuration;
using DaemonEye.Gateway.Security;
using DaemonEye.Logging;
using Microsoft.Extensions.Logging;

namespace DaemonEye.Supervision;

/// <summary>
/// Starts collector processes. Every fork happens on one dedicated thread that lives as long as
/// the agent: children are started under <c>setpriv --pdeathsig KILL</c>, and the kernel delivers
/// that signal when the thread that forked them exits, so it must never be a pool thread. With
/// SIGKILL on the agent, the kernel then kills every collector: none survives as an orphan.
/// Collectors' stdout and stderr go to the agent's log, tagged with the collector id, and to the
/// ring of recent lines <c>daemoneye-cli logs</c> reads (<see cref="CollectorOutputLog"/>).
/// </summary>
internal sealed partial class ProcessLauncher : IDisposable
{
    private const string SetprivPath = "/usr/bin/setpriv";

    private readonly BlockingCollection<(ProcessStartInfo Info, string CollectorId, TaskCompletionSource<Process> Started)> _requests = [];
    private readonly ILogger<ProcessLauncher> _logger;
    private readonly Thread _thread;
    private readonly bool _pdeathsig = File.Exists(SetprivPath);
    private readonly SpawnedCollectors _spawned;
    private readonly CollectorOutputLog _output;

    public ProcessLauncher(SpawnedCollectors spawned, CollectorOutputLog output, ILogger<ProcessLauncher> logger)
    {
        _spawned = spawned;
        _output = output;
        _logger = logger;
        _thread = new Thread(Run) { IsBackground = true, Name = "collector-launcher" };
        _thread.Start();
        if (!_pdeathsig)
        {
            LogNoSetpriv(logger, SetprivPath);
        }
    }

    /// <summary>Starts the collector; the task fails when the program cannot be started.</summary>
    public Task<Process> StartAsync(CollectorDefinition definition, IReadOnlyDictionary<string, string> environment)
    {
        var (file, args) = ResolveCommand(definition);
        var info = new ProcessStartInfo
        {
            FileName = _pdeathsig ? SetprivPath : file,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            // A pipe nobody writes: a collector must never read the agent's terminal or journal input.
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        if (_pdeathsig)
        {
            info.ArgumentList.Add("--pdeathsig");
            info.ArgumentList.Add("KILL");
            info.ArgumentList.Add("--");
            info.ArgumentList.Add(file);
        }

        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        foreach (var (key, value) in definition.Environment)
        {
            info.Environment[key] = value;
        }

        foreach (var (key, value) in environment)
        {
            info.Environment[key] = value;
        }

        var started = new TaskCompletionSource<Process>(TaskCreationOptions.RunContinuationsAsynchronously);
        _requests.Add((info, definition.Id, started));
        return started.Task;
    }

    /// <summary>A .dll runs under this process's dotnet host; anything else runs as given.</summary>
    internal static (string File, IReadOnlyList<string> Arguments) ResolveCommand(CollectorDefinition definition)
    {
        var executable = ResolveExecutable(definition.Executable, Environment.CurrentDirectory, AppContext.BaseDirectory);
        if (executable.EndsWith(".dll", StringComparison.OrdinalIgnoreCase))
        {
            var host = Environment.ProcessPath ?? "dotnet";
            if (!Path.GetFileNameWithoutExtension(host).Equals("dotnet", StringComparison.Ordinal))
            {
                // An installed agent runs from its own apphost: use the dotnet host of the runtime it runs on
                // (…/dotnet/shared/Microsoft.NETCore.App/<version>/ → …/dotnet/dotnet), else dotnet on PATH.
                var runtimeHost = Path.GetFullPath(Path.Combine(System.Runtime.InteropServices.RuntimeEnvironment.GetRuntimeDirectory(), "..", "..", "..", "dotnet"));
                host = File.Exists(runtimeHost) ? runtimeHost : "dotnet";
            }

            return (host, [executable, .. definition.Arguments]);
        }

        return (executable, definition.Arguments);
    }

    /// <summary>An absolute path as given. A relative one against the working directory when a file
    /// is there, otherwise against the agent's own directory (where its build puts
    /// collectors/procmond, and where an installation keeps its collectors).</summary>
    internal static string ResolveExecutable(string executable, string workingDirectory, string agentDirectory) =>
        CollectorExecutable.Resolve(executable, workingDirectory, agentDirectory);

    private void Run()
    {
        foreach (var (info, id, started) in _requests.GetConsumingEnumerable())
        {
            try
            {
                var process = new Process { StartInfo = info, EnableRaisingEvents = true };
                process.OutputDataReceived += (_, e) =>
                {
                    if (e.Data is not null)
                    {
                        LogOutput(_logger, id, "stdout", e.Data);
                        _output.Add(id, "stdout", e.Data);
                    }
                };
                process.ErrorDataReceived += (_, e) =>
                {
                    if (e.Data is not null)
                    {
                        LogOutput(_logger, id, "stderr", e.Data);
                        _output.Add(id, "stderr", e.Data);
                    }
                };
                if (!process.Start())
                {
                    throw new InvalidOperationException("the process did not start");
                }

                // setpriv execs the collector in place, so this pid is the one its socket will report:
                // recorded before the child can have connected, it is how the gateway knows its own children.
                var pid = process.Id;
                _spawned.Started(id, pid);
                process.Exited += (_, _) => _spawned.Exited(id, pid);

                process.BeginOutputReadLine();
                process.BeginErrorReadLine();
                started.TrySetResult(process);
            }
            catch (Exception ex)
            {
                started.TrySetException(new InvalidOperationException($"cannot start collector '{id}' ({info.FileName}): {ex.Message}", ex));
            }
        }
    }

    public void Dispose() => _requests.CompleteAdding();

    [LoggerMessage(EventId = 4100, Level = LogLevel.Information, Message = "[{CollectorId}] {Stream}: {Line}")]
    private static partial void LogOutput(ILogger logger, string collectorId, string stream, UntrustedLine line);

    [LoggerMessage(EventId = 4101, Level = LogLevel.Warning, Message = "{Setpriv} is missing: collectors will not be killed by the kernel if the agent dies; they still exit when their bus connection and parent go away")]
    private static partial void LogNoSetpriv(ILogger logger, string setpriv);
}
