using System.Globalization;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// The real agent started the way systemd starts a service whose output goes to the journal: its
/// stdout and stderr are one end of a Unix stream socket (this class reads the other end, as
/// journald would), and <c>$JOURNAL_STREAM</c> holds that socket's device and inode. Process.Start
/// can give a child only pipes, so this spawns it with posix_spawn. Killed on dispose.
/// </summary>
internal sealed partial class JournalStreamAgent : IAsyncDisposable
{
    private const int AfUnix = 1;
    private const int SockStream = 1;
    private const int SockCloexec = 0x80000;
    private const int SigTerm = 15;
    private const int SigKill = 9;

    private readonly int _pid;
    private readonly Socket _journal;
    private readonly List<string> _lines = [];
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Task _reading;
    private readonly Task<int> _exited;

    private JournalStreamAgent(int pid, int journalFd, string directory, string journalStream)
    {
        _pid = pid;
        Directory = directory;
        JournalStream = journalStream;
        _journal = new Socket(new SafeSocketHandle(journalFd, ownsHandle: true));
        _reading = Task.Run(ReadAsync);
        _exited = Task.Run(WaitForExit);
    }

    public string Directory { get; }

    /// <summary>The value given as $JOURNAL_STREAM: "device:inode" of the agent's stdout.</summary>
    public string JournalStream { get; }

    /// <summary>Every line the agent wrote to the journal stream so far.</summary>
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

    /// <summary>Starts the agent in a fresh temp directory with <paramref name="environment"/> on top of this process's environment, and waits for its ready line.</summary>
    public static async Task<JournalStreamAgent> StartAsync(IReadOnlyDictionary<string, string> environment)
    {
        var directory = System.IO.Directory.CreateTempSubdirectory("de-journal-").FullName;
        var fds = new int[2];
        Check(SocketPair(AfUnix, SockStream | SockCloexec, 0, fds), "socketpair");
        var journalStream = DeviceAndInode(fds[1]);

        var variables = Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
            .ToDictionary(e => (string)e.Key, e => (string?)e.Value ?? string.Empty, StringComparer.Ordinal);
        variables["DAEMONEYE_BROKER__SOCKET_PATH"] = Path.Combine(directory, "run", "bus.sock");
        variables["JOURNAL_STREAM"] = journalStream;
        variables["STATE_DIRECTORY"] = Path.Combine(directory, "state"); // its own durable log (AgentProcess says why)
        foreach (var (key, value) in environment)
        {
            variables[key] = value;
        }

        var pid = Spawn("dotnet", ["dotnet", Paths.AgentDll], [.. variables.Select(v => $"{v.Key}={v.Value}")], directory, fds[1]);
        _ = Close(fds[1]); // the child has its copies as fd 1 and 2
        var agent = new JournalStreamAgent(pid, fds[0], directory, journalStream);
        try
        {
            await Task.WhenAny(agent._ready.Task, agent._exited).Unwrap().WaitAsync(AgentProcess.StartTimeout);
            Assert.True(agent._ready.Task.IsCompleted, $"the agent exited before it was ready:\n{string.Join('\n', agent.Lines)}");
        }
        catch
        {
            await agent.DisposeAsync();
            throw;
        }

        return agent;
    }

    /// <summary>SIGTERM, then the exit code once it has stopped (SIGKILL after 60 s) and its last line is read.</summary>
    public async Task<int> StopAsync()
    {
        _ = Kill(_pid, SigTerm);
        int code;
        try
        {
            code = await _exited.WaitAsync(TimeSpan.FromSeconds(60));
        }
        catch (TimeoutException)
        {
            _ = Kill(_pid, SigKill);
            code = await _exited;
        }

        await _reading.WaitAsync(TimeSpan.FromSeconds(30));
        return code;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_exited.IsCompleted)
        {
            _ = Kill(_pid, SigKill);
        }

        await _exited;
        _journal.Dispose();
        await _reading.ContinueWith(static _ => { }, TaskScheduler.Default);
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private async Task ReadAsync()
    {
        using var stream = new NetworkStream(_journal, ownsSocket: false);
        using var reader = new StreamReader(stream);
        while (await reader.ReadLineAsync() is { } line)
        {
            lock (_lines)
            {
                _lines.Add(line);
            }

            if (line.Contains("daemoneye-agent ready", StringComparison.Ordinal))
            {
                _ready.TrySetResult();
            }
        }
    }

    /// <summary>Blocks (on a pool thread) until the child exits; its exit code, or 128 + the signal that killed it.</summary>
    private unsafe int WaitForExit()
    {
        int status;
        while (WaitPid(_pid, &status, 0) < 0)
        {
            if (Marshal.GetLastPInvokeError() != 4) // EINTR
            {
                return -1; // reaped elsewhere
            }
        }

        return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f);
    }

    private static unsafe string DeviceAndInode(int fd)
    {
        // struct stat on Linux x86_64 and arm64 begins with st_dev and st_ino, both 64-bit.
        ulong* buffer = stackalloc ulong[32];
        Check(FStat(fd, buffer), "fstat");
        return string.Create(CultureInfo.InvariantCulture, $"{buffer[0]}:{buffer[1]}");
    }

    private static unsafe int Spawn(string file, string[] argv, string[] envp, string directory, int output)
    {
        var strings = new List<nint>();
        nint Utf8(string s)
        {
            var p = Marshal.StringToCoTaskMemUTF8(s);
            strings.Add(p);
            return p;
        }

        var args = (nint*)NativeMemory.AllocZeroed((nuint)(argv.Length + 1), (nuint)sizeof(nint));
        var env = (nint*)NativeMemory.AllocZeroed((nuint)(envp.Length + 1), (nuint)sizeof(nint));
        var actions = NativeMemory.AllocZeroed(256); // posix_spawn_file_actions_t is 80 bytes in glibc
        try
        {
            for (var i = 0; i < argv.Length; i++)
            {
                args[i] = Utf8(argv[i]);
            }

            for (var i = 0; i < envp.Length; i++)
            {
                env[i] = Utf8(envp[i]);
            }

            Check(FileActionsInit(actions), "posix_spawn_file_actions_init");
            Check(FileActionsAddDup2(actions, output, 1), "posix_spawn_file_actions_adddup2");
            Check(FileActionsAddDup2(actions, output, 2), "posix_spawn_file_actions_adddup2");
            Check(FileActionsAddChdir(actions, (byte*)Utf8(directory)), "posix_spawn_file_actions_addchdir_np");
            int pid;
            var error = PosixSpawnp(&pid, (byte*)Utf8(file), actions, null, (byte**)args, (byte**)env);
            _ = FileActionsDestroy(actions);
            if (error != 0)
            {
                throw new InvalidOperationException($"posix_spawnp {file}: error {error}");
            }

            return pid;
        }
        finally
        {
            strings.ForEach(Marshal.FreeCoTaskMem);
            NativeMemory.Free(args);
            NativeMemory.Free(env);
            NativeMemory.Free(actions);
        }
    }

    private static void Check(int result, string call)
    {
        if (result != 0)
        {
            throw new InvalidOperationException($"{call} failed: {(result < 0 ? $"errno {Marshal.GetLastPInvokeError()}" : $"error {result}")}");
        }
    }

    [LibraryImport("libc", EntryPoint = "socketpair", SetLastError = true)]
    private static partial int SocketPair(int domain, int type, int protocol, [Out] int[] fds);

    [LibraryImport("libc", EntryPoint = "fstat", SetLastError = true)]
    private static unsafe partial int FStat(int fd, ulong* buffer);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);

    [LibraryImport("libc", EntryPoint = "waitpid", SetLastError = true)]
    private static unsafe partial int WaitPid(int pid, int* status, int options);

    [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_init")]
    private static unsafe partial int FileActionsInit(void* actions);

    [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_adddup2")]
    private static unsafe partial int FileActionsAddDup2(void* actions, int fd, int newFd);

    [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_addchdir_np")]
    private static unsafe partial int FileActionsAddChdir(void* actions, byte* path);

    [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_destroy")]
    private static unsafe partial int FileActionsDestroy(void* actions);

    [LibraryImport("libc", EntryPoint = "posix_spawnp")]
    private static unsafe partial int PosixSpawnp(int* pid, byte* file, void* actions, void* attributes, byte** argv, byte** envp);
}
