using DaemonEye.Coordination;
using DaemonEye.Hosting;
using Microsoft.Extensions.Configuration;

namespace DaemonEye.Configuration;

/// <summary>Where the checks look for what the configuration names.</summary>
/// <param name="WorkingDirectory">The agent's working directory: relative paths (collector executables, the rules directory) are looked up there first.</param>
/// <param name="AgentDirectory">The agent's own directory: a relative collector executable not in the working directory is looked up there.</param>
public sealed record StartupCheckContext(string WorkingDirectory, string AgentDirectory)
{
    /// <summary>The running agent's own view: its working directory and its base directory.</summary>
    public static StartupCheckContext ForThisProcess() => new(Environment.CurrentDirectory, AppContext.BaseDirectory);
}

/// <summary>
/// Every check the agent runs before it starts, in one place: the agent's start-up, <c>daemoneye-cli
/// config validate</c> and a configuration reload all call <see cref="Run"/> and so say the same
/// thing. On top of <see cref="ConfigurationValidator.Validate"/> (each value against what is
/// allowed, unknown keys) it checks the host: both socket directories (owner and mode), each enabled
/// collector's executable (present, a file, executable), and the detection rules (loadable; a broken
/// rule file is a warning: the agent runs the others).
/// </summary>
public static class StartupChecks
{
    public static ConfigurationReport Run(IConfiguration configuration, StartupCheckContext context)
    {
        var report = ConfigurationValidator.Validate(configuration);
        var usable = ConfigurationValidator.WithoutUnconvertible(configuration);
        var errors = new List<string>(report.Errors);
        var warnings = new List<string>(report.Warnings);

        errors.AddRange(Sockets(usable).Select(e => ConfigurationValidator.WithSource(configuration, e)));
        foreach (var (problem, fatal) in Executables(usable, context))
        {
            (fatal ? errors : warnings).Add(ConfigurationValidator.WithSource(configuration, problem));
        }

        return new ConfigurationReport(errors, warnings, Rules(usable, context));
    }

    private static IEnumerable<string> Sockets(IConfiguration configuration)
    {
        BrokerOptions broker;
        IpcOptions ipc;
        uint? group;
        try
        {
            broker = ConfigurationValidator.Bind<BrokerOptions>(configuration, BrokerOptions.SectionName);
            ipc = ConfigurationValidator.Bind<IpcOptions>(configuration, IpcOptions.SectionName);
            group = ConfigurationValidator.Bind<SecurityOptions>(configuration, SecurityOptions.SectionName).ResolveSocketGroupId();
        }
        catch (InvalidOperationException)
        {
            yield break; // Reported by the validator: a value of these sections does not convert.
        }

        var bus = SocketPaths.BusSocket(broker.SocketPath);
        var ipcPath = SocketPaths.IpcSocket(ipc.SocketPath, broker.SocketPath);
        var busDirectory = Path.GetDirectoryName(bus)!;
        if (SocketDirectory.Problem(busDirectory, "bus", group) is { } busProblem)
        {
            yield return $"broker.socket_path '{bus}': {busProblem}";
        }

        var ipcDirectory = Path.GetDirectoryName(ipcPath)!;
        if (ipcDirectory != busDirectory && SocketDirectory.Problem(ipcDirectory, "IPC", group) is { } ipcProblem)
        {
            yield return $"ipc.socket_path '{ipcPath}': {ipcProblem}";
        }
    }

    /// <summary>Each collector's executable; a problem is fatal for an enabled collector, a warning for a disabled one.</summary>
    private static IEnumerable<(string Problem, bool Fatal)> Executables(IConfiguration configuration, StartupCheckContext context)
    {
        List<CollectorDefinition> collectors;
        try
        {
            collectors = ConfigurationValidator.BindCollectors(configuration);
        }
        catch (InvalidOperationException)
        {
            yield break;
        }

        for (var i = 0; i < collectors.Count; i++)
        {
            var collector = collectors[i];
            if (string.IsNullOrWhiteSpace(collector.Executable) || CollectorExecutable.Problem(collector.Executable, context) is not { } problem)
            {
                continue;
            }

            var consequence = collector.Enabled ? "the agent cannot start it" : "it is disabled, but `collectors start` would fail";
            yield return ($"collectors[{i}].executable {problem}; collector '{collector.Id}': {consequence}", collector.Enabled);
        }
    }

    private static List<string> Rules(IConfiguration configuration, StartupCheckContext context)
    {
        CoordinationOptions options;
        try
        {
            options = ConfigurationValidator.Bind<CoordinationOptions>(configuration, CoordinationOptions.SectionName);
        }
        catch (InvalidOperationException)
        {
            return [];
        }

        var directory = Path.GetFullPath(options.Rules.Directory, context.WorkingDirectory);
        return [.. RuleFiles.LoadDirectory(directory).Problems.Select(p => $"detection rule {p}")];
    }
}

/// <summary>Where a collector's executable is, and whether the agent can run it.</summary>
public static class CollectorExecutable
{
    /// <summary>An absolute path as given. A relative one against the working directory when a file
    /// is there, otherwise against the agent's own directory (where its build puts
    /// collectors/procmond, and where an installation keeps its collectors).</summary>
    public static string Resolve(string executable, string workingDirectory, string agentDirectory)
    {
        if (Path.IsPathRooted(executable))
        {
            return Path.GetFullPath(executable);
        }

        var fromWorkingDirectory = Path.GetFullPath(executable, workingDirectory);
        if (File.Exists(fromWorkingDirectory))
        {
            return fromWorkingDirectory;
        }

        var fromAgent = Path.GetFullPath(executable, agentDirectory);
        return File.Exists(fromAgent) ? fromAgent : fromWorkingDirectory;
    }

    /// <summary>Why the agent could not run <paramref name="executable"/>, or null. A .dll runs under dotnet and needs only be readable.</summary>
    public static string? Problem(string executable, StartupCheckContext context)
    {
        var path = Resolve(executable, context.WorkingDirectory, context.AgentDirectory);
        if (Directory.Exists(path))
        {
            return $"'{executable}' is a directory ({path}); give the collector's program file";
        }

        if (!File.Exists(path))
        {
            var where = Path.IsPathRooted(executable)
                ? string.Empty
                : $" (looked in the working directory {context.WorkingDirectory} and the agent's directory {context.AgentDirectory})";
            return $"'{executable}' does not exist{where}";
        }

        if (path.EndsWith(".dll", StringComparison.OrdinalIgnoreCase))
        {
            try
            {
                using var _ = File.OpenRead(path);
                return null;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                return $"'{path}' cannot be read: {ex.Message}";
            }
        }

        return Posix.CanExecute(path)
            ? null
            : $"'{path}' is not executable by this user (uid {Posix.EffectiveUserId}, mode 0{Convert.ToString((int)(File.GetUnixFileMode(path) & (UnixFileMode)0xfff), 8)}): chmod +x {path}";
    }
}
