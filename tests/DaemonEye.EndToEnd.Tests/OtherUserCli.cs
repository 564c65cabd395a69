using System.Diagnostics;
using DaemonEye.Hosting;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>A test that switches users with setpriv: skipped, saying why, unless the tests run as root.</summary>
public sealed class RootFactAttribute : FactAttribute
{
    public RootFactAttribute(string reason = "the test runs daemoneye-cli as another user (uid 65534) with setpriv")
    {
        if (!Posix.IsRoot)
        {
            Skip = "needs root: " + reason;
        }
    }
}

/// <summary>
/// The real daemoneye-cli run as another user by setpriv, from a copy of its build output staged for
/// the test in a fresh directory under /tmp that every uid can read (directories 0755, files 0644),
/// removed on dispose. The checkout may sit under a private directory (a clone in /root, mode 0700):
/// another uid could not even resolve the build output there. Every test that runs something as
/// another uid goes through here.
/// </summary>
internal sealed class OtherUserCli : IDisposable
{
    /// <summary>setpriv's credentials for uid 65534 (nobody), group 65534 (nogroup), no supplementary groups.</summary>
    public static readonly string[] AsNobody = [$"--reuid={Nobody}", $"--regid={NoGroup}", "--clear-groups"];

    public const uint Nobody = 65534;
    public const uint NoGroup = 65534;

    /// <summary>Where the stages are made: world-traversable (1777) on every Linux, whatever TMPDIR says.</summary>
    private const string StageRoot = "/tmp";

    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);
    private const UnixFileMode DirectoryMode = (UnixFileMode)0b111_101_101;
    private const UnixFileMode FileMode = (UnixFileMode)0b110_100_100;

    private OtherUserCli(string directory, string dll)
    {
        Directory = directory;
        Dll = Path.Combine(directory, Path.GetFileName(dll));
    }

    /// <summary>The staged copy of the program's build output.</summary>
    public string Directory { get; }

    /// <summary>The program's dll (daemoneye-cli.dll unless staged otherwise) in <see cref="Directory"/>.</summary>
    public string Dll { get; }

    /// <summary>Copies the CLI's build output into a new directory every uid can read.</summary>
    public static OtherUserCli Stage() => Stage(Paths.CliDll);

    /// <summary>Copies the build output of the program <paramref name="dll"/> (e.g. the socket probe) the same way.</summary>
    public static OtherUserCli Stage(string dll)
    {
        var source = Path.GetDirectoryName(dll)!;
        if (!File.Exists(dll))
        {
            throw new InvalidOperationException($"no build output at {dll}: build the solution first");
        }

        var directory = Path.Combine(StageRoot, $"de-otheruser-{Guid.NewGuid():N}");
        System.IO.Directory.CreateDirectory(directory);
        var stage = new OtherUserCli(directory, dll);
        try
        {
            Copy(source, directory);
            return stage;
        }
        catch
        {
            stage.Dispose();
            throw;
        }
    }

    private static void Copy(string from, string to)
    {
        File.SetUnixFileMode(to, DirectoryMode);
        foreach (var file in System.IO.Directory.EnumerateFiles(from))
        {
            var target = Path.Combine(to, Path.GetFileName(file));
            File.Copy(file, target);
            File.SetUnixFileMode(target, FileMode);
        }

        foreach (var child in System.IO.Directory.EnumerateDirectories(from))
        {
            var target = Path.Combine(to, Path.GetFileName(child));
            System.IO.Directory.CreateDirectory(target);
            Copy(child, target);
        }
    }

    /// <summary>
    /// <c>setpriv &lt;credentials&gt; -- dotnet &lt;staged&gt;/daemoneye-cli.dll &lt;args&gt;</c> against the agent
    /// at <paramref name="socketPath"/>; setpriv execs, so the pid is the CLI's. Killed if it outlives
    /// the patience.
    /// </summary>
    public async Task<(int Code, int Pid, string Stdout, string Stderr)> RunAsync(string[] credentials, string socketPath, params string[] args)
    {
        var start = new ProcessStartInfo("/usr/bin/setpriv")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = StageRoot,
        };
        foreach (var c in credentials)
        {
            start.ArgumentList.Add(c);
        }

        start.ArgumentList.Add("--");
        start.ArgumentList.Add("dotnet");
        start.ArgumentList.Add(Dll);
        foreach (var a in args)
        {
            start.ArgumentList.Add(a);
        }

        start.Environment["DAEMONEYE_BROKER__SOCKET_PATH"] = socketPath;
        start.Environment["HOME"] = StageRoot;
        start.Environment["DOTNET_CLI_HOME"] = StageRoot;
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(Patience);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }

        return (process.ExitCode, process.Id, await stdout, await stderr);
    }

    public void Dispose()
    {
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }
}
