using DaemonEye.Configuration;
using DaemonEye.Silo;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Time.Testing;

namespace DaemonEye.Server.Tests;

/// <summary>broker.startup_timeout_seconds: start-up that takes longer stops the agent with exit 1 and a message naming the key; the configured value is the one that applies.</summary>
public sealed class AgentStartupTimeoutTests
{
    [Fact]
    public async Task Start_up_longer_than_broker_startup_timeout_seconds_exits_1_naming_the_key()
    {
        var time = new FakeTimeProvider();
        var slow = new SlowService();
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [], DisableDefaults = true });
        builder.Services.AddSingleton<IHostedService>(slow);
        using var host = builder.Build();
        using var error = new StringWriter();

        var run = AgentRunner.RunAsync(host, startupTimeoutSeconds: 5, time, error);
        await slow.Starting.Task;
        time.Advance(TimeSpan.FromSeconds(4.999));
        Assert.False(run.IsCompleted);
        time.Advance(TimeSpan.FromMilliseconds(1));

        Assert.Equal(1, await run);
        Assert.Contains("start-up did not finish within broker.startup_timeout_seconds (5 s)", error.ToString(), StringComparison.Ordinal);
        Assert.True(slow.WasCancelled);
    }

    /// <summary>The agent's own path: the key read from a YAML file by the agent's loader is the timeout that applies.</summary>
    [Fact]
    public async Task The_timeout_is_broker_startup_timeout_seconds_from_the_configuration_file()
    {
        var directory = Directory.CreateTempSubdirectory("de-startup-").FullName;
        try
        {
            var file = Path.Combine(directory, "agent.yaml");
            await File.WriteAllTextAsync(file, "broker:\n  startup_timeout_seconds: 7\n");
            var configuration = new ConfigurationManager();
            configuration.AddDaemonEyeConfiguration(file);
            var time = new FakeTimeProvider();
            var slow = new SlowService();
            var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [], DisableDefaults = true });
            builder.Services.AddSingleton<IHostedService>(slow);
            using var host = builder.Build();
            using var error = new StringWriter();

            var run = AgentRunner.RunAsync(host, configuration, time, error);
            await slow.Starting.Task;
            time.Advance(TimeSpan.FromSeconds(6.999));
            Assert.False(run.IsCompleted);
            time.Advance(TimeSpan.FromMilliseconds(1));

            Assert.Equal(1, await run);
            Assert.Contains("start-up did not finish within broker.startup_timeout_seconds (7 s)", error.ToString(), StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public async Task Start_up_within_the_timeout_runs_until_stopped_and_exits_0()
    {
        var time = new FakeTimeProvider();
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [], DisableDefaults = true });
        using var host = builder.Build();
        using var error = new StringWriter();

        var run = AgentRunner.RunAsync(host, startupTimeoutSeconds: 1, time, error);
        var lifetime = host.Services.GetRequiredService<IHostApplicationLifetime>();
        var started = new TaskCompletionSource();
        lifetime.ApplicationStarted.Register(started.SetResult);
        await started.Task;
        time.Advance(TimeSpan.FromSeconds(10));
        lifetime.StopApplication();

        Assert.Equal(0, await run);
        Assert.Equal(string.Empty, error.ToString());
    }

    private sealed class SlowService : IHostedService
    {
        public TaskCompletionSource Starting { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public bool WasCancelled { get; private set; }

        public async Task StartAsync(CancellationToken cancellationToken)
        {
            Starting.SetResult();
            try
            {
                await Task.Delay(Timeout.Infinite, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                WasCancelled = true;
                throw;
            }
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
