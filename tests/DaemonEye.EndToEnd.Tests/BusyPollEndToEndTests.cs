using System.Globalization;
using DaemonEye.Client;
using DaemonEye.Protocol.V1;
using Xunit.Abstractions;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// broker.busy_poll_microseconds, seen from outside the agent: whether its bus socket thread goes to
/// sleep between the calls of a burst. Sleeping in epoll_wait is a voluntary context switch of that
/// thread (/proc/PID/task/TID/status); polling and yielding the CPU (sched_yield) is not.
/// </summary>
public sealed class BusyPollEndToEndTests(ITestOutputHelper output)
{
    private const int Calls = 1_000;

    [Theory]
    [InlineData(0)]
    [InlineData(10_000)]
    public async Task With_busy_polling_the_agents_socket_thread_stays_awake_between_the_calls_of_a_burst(int microseconds)
    {
        var settings = new Dictionary<string, string>(TestTokens.AgentSettings("tc-poll"))
        {
            ["DAEMONEYE_BROKER__BUSY_POLL_MICROSECONDS"] = microseconds.ToString(CultureInfo.InvariantCulture),
        };
        await using var agent = await AgentProcess.StartAsync(settings);
        Assert.Contains($"busy_poll_microseconds {microseconds})", agent.Log, StringComparison.Ordinal);
        using var collector = await TestCollectorProcess.StartAsync(agent.SocketPath, "tc-poll");
        await using var caller = await BusClient.ConnectAsync(new BusClientOptions { SocketPath = agent.SocketPath, ClientId = "poll-caller" });
        await CallAsync(caller, 100); // past connection set-up and the JIT's first tier

        var reactor = ReactorThread(agent.Pid);
        var before = VoluntarySwitches(agent.Pid, reactor);
        await CallAsync(caller, Calls);
        var sleeps = VoluntarySwitches(agent.Pid, reactor) - before;
        output.WriteLine($"busy_poll_microseconds {microseconds}: the socket thread slept {sleeps} times in {Calls} calls");

        if (microseconds == 0)
        {
            // Each call's request and answer come to a thread asleep in epoll_wait.
            Assert.True(sleeps >= Calls, $"the socket thread slept {sleeps} times in {Calls} calls without busy polling; expected at least once a call");
        }
        else
        {
            // 10 ms is far longer than a call takes: the thread never sleeps between two of them.
            Assert.True(sleeps < Calls / 5, $"the socket thread slept {sleeps} times in {Calls} calls with a 10 ms busy-poll window; expected under {Calls / 5}");
        }
    }

    private static async Task CallAsync(BusClient caller, int calls)
    {
        for (var i = 0; i < calls; i++)
        {
            var response = await caller.CallAsync("tc-poll", RpcOperation.HealthCheck, timeout: TimeSpan.FromSeconds(30));
            Assert.Equal(RpcStatus.Ok, response.Status);
        }
    }

    /// <summary>The agent's bus socket thread ("daemoneye-reactor", 15 characters of it in comm).</summary>
    private static int ReactorThread(int pid)
    {
        var found = Directory.GetDirectories($"/proc/{pid}/task")
            .Where(task => File.ReadAllText(Path.Combine(task, "comm")).TrimEnd('\n') == "daemoneye-react")
            .Select(task => int.Parse(Path.GetFileName(task), CultureInfo.InvariantCulture))
            .ToList();
        return Assert.Single(found);
    }

    private static long VoluntarySwitches(int pid, int tid)
    {
        const string Key = "voluntary_ctxt_switches:";
        var line = File.ReadLines($"/proc/{pid}/task/{tid}/status").Single(l => l.StartsWith(Key, StringComparison.Ordinal));
        return long.Parse(line.AsSpan(Key.Length).Trim(), CultureInfo.InvariantCulture);
    }
}
