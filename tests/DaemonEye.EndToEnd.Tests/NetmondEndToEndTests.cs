using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using DaemonEye.Client;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.Network.V1;
using DaemonEye.Protocol.Task.V1;
using DaemonEye.Protocol.V1;
using Google.Protobuf;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// The real agent supervising the real netmond (as built into the agent's collectors/netmond): the
/// shipped configuration starts it, the network.snapshot task answers with this test's listener,
/// and a wildcard listener and a child's connection (bash /dev/tcp, held by lines on its stdin)
/// travel the bus as events.network.*.
/// </summary>
public sealed class NetmondEndToEndTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private static string NetmondDll => Path.Combine(Path.GetDirectoryName(Paths.AgentDll)!, "collectors", "netmond", "netmond.dll");

    private static async Task<CollectorStatus> WaitRunningAsync(AgentProcess agent, BusClient client)
    {
        var control = await client.SubscribeAsync("control.#");
        var status = await IpcProbe.CollectorAsync(agent.IpcSocketPath, "netmond");
        using var timeout = new CancellationTokenSource(Patience);
        await using var e = control.ReadAllAsync(timeout.Token).GetAsyncEnumerator(timeout.Token);
        while (status.State != CollectorState.Running && await e.MoveNextAsync())
        {
            status = await IpcProbe.CollectorAsync(agent.IpcSocketPath, "netmond");
        }

        Assert.True(status.State == CollectorState.Running, $"netmond: {status}\n{agent.Log}");
        return status;
    }

    private static async Task<NetworkSnapshot> SnapshotAsync(BusClient client, bool fresh)
    {
        var task = new TaskRequest { TaskId = "e2e", TaskType = "network.snapshot" };
        task.Parameters["fresh"] = fresh ? "true" : "false";
        var response = await client.CallAsync("netmond", RpcOperation.ExecuteTask, task.ToByteString(), TimeSpan.FromSeconds(30));
        Assert.True(response.Status == RpcStatus.Ok, $"{response.Error}");
        var result = TaskResult.Parser.ParseFrom(response.Payload);
        Assert.Equal("daemoneye.network.v1.NetworkSnapshot", result.PayloadType);
        return NetworkSnapshot.Parser.ParseFrom(result.Payload);
    }

    private static async Task<T> NextAsync<T>(BusSubscription subscription, MessageParser<T> parser, Func<T, bool> match, AgentProcess agent)
        where T : IMessage<T>
    {
        using var timeout = new CancellationTokenSource(Patience);
        try
        {
            await foreach (var message in subscription.ReadAllAsync(timeout.Token))
            {
                Assert.Equal("application/x-protobuf; messageType=" + parser.ParseFrom([]).Descriptor.FullName, message.ContentType);
                var decoded = parser.ParseFrom(message.Payload.Span);
                if (match(decoded))
                {
                    return decoded;
                }
            }
        }
        catch (OperationCanceledException)
        {
        }

        Assert.Fail($"no matching {typeof(T).Name} within {Patience}\n{agent.Log}");
        return default!;
    }

    [Fact]
    public async Task The_shipped_configuration_launches_netmond_and_its_snapshot_has_this_tests_listener()
    {
        var first = await AgentProcess.StartAsync();
        await first.StopAsync();
        await first.DisposeAsync(keepDirectory: true);
        Directory.CreateDirectory(Path.Combine(first.Directory, "config"));
        File.Copy(Path.Combine(Paths.RepositoryRoot, "config", "daemoneye.yaml"), Path.Combine(first.Directory, "config", "daemoneye.yaml"));

        await using var agent = await AgentProcess.StartAsync(reuse: first);
        await using var client = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = "netmond-e2e" });
        var status = await WaitRunningAsync(agent, client);
        Assert.Equal("collectors/netmond/netmond.dll", status.Executable);
        Assert.Contains($"{Path.GetDirectoryName(Paths.AgentDll)}/collectors/netmond/netmond.dll", File.ReadAllText($"/proc/{status.Pid}/cmdline").Replace('\0', ' '), StringComparison.Ordinal);

        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = (uint)((IPEndPoint)listener.LocalEndpoint).Port;
        var snapshot = await SnapshotAsync(client, fresh: true);
        var mine = Assert.Single(snapshot.Listeners, l => l.Local.Port == port && l.Transport == Transport.Tcp);
        Assert.Equal((uint)Environment.ProcessId, mine.Owner.Pid);
        Assert.Equal(BindScope.Loopback, mine.Scope);
        Assert.Equal("netmond", snapshot.CollectorId);
        Assert.NotEqual(0UL, snapshot.NetworkNamespace);
    }

    [Fact]
    public async Task A_wildcard_listener_and_a_childs_connection_travel_the_bus_with_pid_and_bytes()
    {
        await using var agent = await AgentProcess.StartAsync(new Dictionary<string, string>
        {
            ["DAEMONEYE_COLLECTORS__0__ID"] = "netmond",
            ["DAEMONEYE_COLLECTORS__0__EXECUTABLE"] = NetmondDll,
            ["DAEMONEYE_COLLECTORS__0__ARGUMENTS__0"] = "--scan-interval-ms",
            ["DAEMONEYE_COLLECTORS__0__ARGUMENTS__1"] = "100",
        });
        await using var client = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = "netmond-e2e" });
        await WaitRunningAsync(agent, client);
        var listeners = await client.SubscribeAsync("events.network.listener");
        var connections = await client.SubscribeAsync("events.network.connection");
        await SnapshotAsync(client, fresh: false); // the baseline is done

        var listener = new TcpListener(IPAddress.Any, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        using var child = Process.Start(new ProcessStartInfo("bash", ["-c", $"exec 3<>/dev/tcp/127.0.0.1/{port} || exit 9; read -r go; printf '%*s' 4096 '' >&3; exec 3>&-; read -r end"]) { RedirectStandardInput = true })!;
        try
        {
            var started = await NextAsync(listeners, ListenerEvent.Parser, e => e.Listener.Local.Port == (uint)port, agent);
            Assert.Equal(ListenerEventKind.Started, started.Kind);
            Assert.True(started.Listener.Exposed);
            Assert.Equal((uint)Environment.ProcessId, started.Listener.Owner.Pid);

            using var accepted = await listener.AcceptSocketAsync();
            var clientPort = (uint)((IPEndPoint)accepted.RemoteEndPoint!).Port;
            var opened = await NextAsync(connections, ConnectionEvent.Parser, e => e.Connection.Local.Port == clientPort, agent);
            Assert.Equal(ConnectionEventKind.Opened, opened.Kind);
            Assert.Equal((uint)child.Id, opened.Connection.Owner.Pid);

            await child.StandardInput.WriteLineAsync("go");
            await child.StandardInput.FlushAsync();
            var buffer = new byte[8192];
            while (await accepted.ReceiveAsync(buffer) > 0)
            {
            }

            accepted.Close();
            var closed = await NextAsync(connections, ConnectionEvent.Parser, e => e.Connection.Local.Port == clientPort && e.Kind == ConnectionEventKind.Closed, agent);
            Assert.Equal((uint)child.Id, closed.Connection.Owner.Pid);
            Assert.Equal(4096UL, closed.Connection.BytesSent);
            Assert.Equal("destroyed", closed.CloseSource);
            Assert.Equal("netmond", closed.CollectorId);

            listener.Stop();
            var stopped = await NextAsync(listeners, ListenerEvent.Parser, e => e.Listener.Local.Port == (uint)port, agent);
            Assert.Equal(ListenerEventKind.Stopped, stopped.Kind);
        }
        finally
        {
            listener.Stop();
            if (!child.HasExited)
            {
                child.Kill();
            }

            await child.WaitForExitAsync();
        }
    }
}
