using System.Diagnostics;
using System.Globalization;
using DaemonEye.Client;
using DaemonEye.Protocol.Alert.V1;
using DaemonEye.Protocol.Ipc.V1;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// The real agent with the real procmond, netmond and fsmond, running the shipped rules
/// (config/rules) every second, with the watch lists pointed at a unique temp directory: the tests
/// change files there, never the real /etc or /usr/bin. Alerts are collected from the bus.
/// </summary>
internal sealed class ShippedRulesAgent : IAsyncDisposable
{
    public static readonly TimeSpan Patience = TimeSpan.FromSeconds(90);
    private readonly List<Process> _processes = [];
    private readonly List<Alert> _alerts = [];
    private readonly List<(Func<Alert, bool> Match, TaskCompletionSource<Alert> Seen)> _waits = [];
    private BusClient? _client;
    private Task? _reader;

    private ShippedRulesAgent(DirectoryInfo work, AgentProcess agent)
    {
        Work = work;
        Agent = agent;
    }

    public DirectoryInfo Work { get; }

    public AgentProcess Agent { get; }

    public string Etc => Path.Combine(Work.FullName, "etc");

    public string Home => Path.Combine(Work.FullName, "home");

    public string SystemBin => Path.Combine(Work.FullName, "usr", "bin");

    public string Volatile => Path.Combine(Work.FullName, "tmp");

    public string Opt => Path.Combine(Work.FullName, "opt");

    private static string CollectorDll(string name) => Path.Combine(Path.GetDirectoryName(Paths.AgentDll)!, "collectors", name, name + ".dll");

    public static async Task<ShippedRulesAgent> StartAsync()
    {
        var work = Directory.CreateTempSubdirectory("de-shipped-rules-");
        foreach (var dir in new[] { "etc/sudoers.d", "home/alice/.ssh", "usr/bin", "tmp", "opt" })
        {
            Directory.CreateDirectory(Path.Combine(work.FullName, dir));
        }

        File.Copy("/usr/bin/true", Path.Combine(work.FullName, "usr", "bin", "ls"));
        var root = work.FullName;
        var env = new Dictionary<string, string>
        {
            ["DAEMONEYE_COLLECTORS__0__ID"] = "procmond",
            ["DAEMONEYE_COLLECTORS__0__EXECUTABLE"] = CollectorDll("procmond"),
            ["DAEMONEYE_COLLECTORS__0__ARGUMENTS__0"] = "--scan-interval-ms",
            ["DAEMONEYE_COLLECTORS__0__ARGUMENTS__1"] = "500",
            ["DAEMONEYE_COLLECTORS__1__ID"] = "netmond",
            ["DAEMONEYE_COLLECTORS__1__EXECUTABLE"] = CollectorDll("netmond"),
            ["DAEMONEYE_COLLECTORS__1__ARGUMENTS__0"] = "--scan-interval-ms",
            ["DAEMONEYE_COLLECTORS__1__ARGUMENTS__1"] = "500",
            ["DAEMONEYE_COLLECTORS__2__ID"] = "fsmond",
            ["DAEMONEYE_COLLECTORS__2__EXECUTABLE"] = CollectorDll("fsmond"),
            ["DAEMONEYE_COLLECTORS__2__ARGUMENTS__0"] = "--watch",
            ["DAEMONEYE_COLLECTORS__2__ARGUMENTS__1"] = root + "/**",
            ["DAEMONEYE_COLLECTORS__2__ARGUMENTS__2"] = "--executable-watch",
            ["DAEMONEYE_COLLECTORS__2__ARGUMENTS__3"] = root + "/tmp/**",
            ["DAEMONEYE_COLLECTORS__2__ARGUMENTS__4"] = "--integrity=",
            ["DAEMONEYE_COORDINATION__RULES__DIRECTORY"] = Path.Combine(Paths.RepositoryRoot, "config", "rules"),
            ["DAEMONEYE_COORDINATION__RULES__INTERVAL_SECONDS"] = "1",
            ["DAEMONEYE_COORDINATION__RULES__WATCH_LISTS__SENSITIVE_FILES__0"] = root + "/etc/passwd",
            ["DAEMONEYE_COORDINATION__RULES__WATCH_LISTS__SENSITIVE_FILES__1"] = root + "/etc/shadow",
            ["DAEMONEYE_COORDINATION__RULES__WATCH_LISTS__SENSITIVE_FILES__2"] = root + "/etc/sudoers",
            ["DAEMONEYE_COORDINATION__RULES__WATCH_LISTS__SENSITIVE_FILES__3"] = root + "/etc/sudoers.d/*",
            ["DAEMONEYE_COORDINATION__RULES__WATCH_LISTS__SENSITIVE_FILES__4"] = root + "/home/*/.ssh/authorized_keys",
            ["DAEMONEYE_COORDINATION__RULES__WATCH_LISTS__SYSTEM_BINARIES__0"] = root + "/usr/bin/*",
            ["DAEMONEYE_COORDINATION__RULES__WATCH_LISTS__VOLATILE_DIRECTORIES__0"] = root + "/tmp/*",
        };
        AgentProcess agent;
        try
        {
            agent = await AgentProcess.StartAsync(env);
        }
        catch
        {
            work.Delete(recursive: true);
            throw;
        }

        var self = new ShippedRulesAgent(work, agent);
        try
        {
            await self.ConnectAsync();
        }
        catch
        {
            await self.DisposeAsync();
            throw;
        }

        return self;
    }

    private async Task ConnectAsync()
    {
        _client = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = Agent.SocketPath, ClientId = "shipped-rules-e2e" });
        var alerts = await _client.SubscribeAsync("events.alert.#");
        _reader = Task.Run(async () =>
        {
            await foreach (var message in alerts.ReadAllAsync())
            {
                var alert = Alert.Parser.ParseFrom(message.Payload.Span);
                lock (_alerts)
                {
                    _alerts.Add(alert);
                    foreach (var wait in _waits.Where(w => w.Match(alert)).ToList())
                    {
                        _waits.Remove(wait);
                        wait.Seen.TrySetResult(alert);
                    }
                }
            }
        });
        var control = await _client.SubscribeAsync("control.#");
        await CoordinationEndToEndTests.WaitForAsync(Agent, control, s => s.State == CollectorState.Running && s.Health == CollectorHealth.Healthy, "procmond", "netmond", "fsmond");
        await control.DisposeAsync();

        // The rules have run once with every collector answering: the baseline of the machine as it is.
        await Agent.WaitForLineAsync(l => l.Contains("Detection rules ran: 6 rule(s) evaluated, 0 waiting", StringComparison.Ordinal)).WaitAsync(Patience);
    }

    /// <summary>Every alert received so far.</summary>
    public IReadOnlyList<Alert> Alerts
    {
        get
        {
            lock (_alerts)
            {
                return [.. _alerts];
            }
        }
    }

    /// <summary>The first alert (received before or after the call) that <paramref name="match"/> accepts.</summary>
    public async Task<Alert> AlertAsync(string ruleId, Func<Alert, bool> match)
    {
        var seen = new TaskCompletionSource<Alert>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_alerts)
        {
            if (_alerts.FirstOrDefault(a => a.RuleId == ruleId && match(a)) is { } earlier)
            {
                return earlier;
            }

            _waits.Add((a => a.RuleId == ruleId && match(a), seen));
        }

        try
        {
            return await seen.Task.WaitAsync(Patience);
        }
        catch (TimeoutException)
        {
            Assert.Fail($"no {ruleId} alert matched within {Patience}; alerts: {string.Join("; ", Alerts.Select(Describe))}\n{Agent.Log}");
            throw;
        }
    }

    public static string Describe(Alert a) => $"{a.RuleId}({string.Join(' ', a.Fields.Select(f => f.Name + "=" + f.Value))})";

    public static string Field(Alert alert, string name) => alert.Fields.Single(f => f.Name == name).Value;

    public static string Pid(int pid) => pid.ToString(CultureInfo.InvariantCulture);

    /// <summary>Starts a process this agent kills on dispose (its whole tree).</summary>
    public Process Start(ProcessStartInfo info)
    {
        var process = Process.Start(info)!;
        _processes.Add(process);
        return process;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var process in _processes)
        {
            try
            {
                if (!process.HasExited)
                {
                    process.Kill(entireProcessTree: true);
                    await process.WaitForExitAsync();
                }
            }
            catch (InvalidOperationException)
            {
            }

            process.Dispose();
        }

        if (_client is not null)
        {
            await _client.DisposeAsync();
        }

        if (_reader is not null)
        {
            try
            {
                await _reader.WaitAsync(Patience);
            }
            catch (Exception ex) when (ex is TimeoutException or OperationCanceledException or IOException or ObjectDisposedException)
            {
            }
        }

        await Agent.DisposeAsync();
        Work.Delete(recursive: true);
    }
}
