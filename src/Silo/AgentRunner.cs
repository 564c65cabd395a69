using DaemonEye.Configuration;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace DaemonEye.Silo;

/// <summary>Runs the host until SIGTERM or Ctrl-C and turns failures into clear exit codes.</summary>
internal static partial class AgentRunner
{
    /// <summary>Runs the host with the start-up timeout <c>broker.startup_timeout_seconds</c> of <paramref name="configuration"/>.</summary>
    public static Task<int> RunAsync(IHost host, IConfiguration configuration, TimeProvider? time = null, TextWriter? error = null) =>
        RunAsync(host, configuration.GetBrokerOptions().StartupTimeoutSeconds, time, error);

    /// <summary>
    /// Starts the host, giving up (exit 1) if start-up — the silo, both sockets, the ready
    /// notification — takes longer than <c>broker.startup_timeout_seconds</c>; then runs it until
    /// it is asked to stop.
    /// </summary>
    public static async Task<int> RunAsync(IHost host, int startupTimeoutSeconds, TimeProvider? time = null, TextWriter? error = null)
    {
        error ??= Console.Error;
        var startupTimeout = TimeSpan.FromSeconds(startupTimeoutSeconds);
        try
        {
            using (var startup = new CancellationTokenSource(startupTimeout, time ?? TimeProvider.System))
            {
                try
                {
                    await host.StartAsync(startup.Token);
                }
                catch (OperationCanceledException) when (startup.IsCancellationRequested)
                {
                    error.WriteLine($"daemoneye-agent: start-up did not finish within broker.startup_timeout_seconds ({startupTimeoutSeconds} s); stopping. Raise broker.startup_timeout_seconds if the host is slow.");
                    using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                    await StopQuietlyAsync(host, error, stop.Token);
                    return 1;
                }
            }

            await host.WaitForShutdownAsync();
            return 0;
        }
        catch (OptionsValidationException ex)
        {
            error.WriteLine($"daemoneye-agent: the configuration is invalid:");
            foreach (var failure in ex.Failures)
            {
                error.WriteLine($"  - {failure}");
            }

            return 2;
        }
        catch (Gateway.SocketSecurityException ex)
        {
            // The socket's directory or file would not be private: fix the configuration or the directory.
            Console.Error.WriteLine($"daemoneye-agent: the configuration is invalid:");
            Console.Error.WriteLine($"  - {ex.Message}");
            return 2;
        }
        catch (InvalidOperationException ex)
        {
            error.WriteLine($"daemoneye-agent: failed to start: {ex.Message}");
            return 1;
        }
    }

    private static async Task StopQuietlyAsync(IHost host, TextWriter error, CancellationToken cancellationToken)
    {
        try
        {
            await host.StopAsync(cancellationToken);
        }
        catch (Exception ex) when (ex is OperationCanceledException or InvalidOperationException or AggregateException)
        {
            error.WriteLine($"daemoneye-agent: stopping after the failed start-up: {ex.Message}");
        }
    }
}

/// <summary>The agent's command line: <c>[--config PATH] [--help]</c>.</summary>
internal sealed record AgentCommandLine(string? ConfigPath, bool ShowHelp, bool Dashboard = false)
{
    public const string Usage = """
        usage: daemoneye-agent [--config PATH] [--dashboard]

          --config PATH   configuration file (YAML). Default: config/daemoneye.yaml if it exists,
                          else the embedded defaults. Environment variables DAEMONEYE_<SECTION>__<KEY>
                          override file values (e.g. DAEMONEYE_BROKER__SOCKET_PATH).
          --dashboard     serve the Orleans dashboard on 127.0.0.1 (orleans.dashboard_port, default
                          8080); the same as orleans.dashboard: true. For development.
          --help          show this help
        """;

    public static bool TryParse(string[] args, out AgentCommandLine result, out string? error)
    {
        string? config = null;
        var help = false;
        var dashboard = false;
        error = null;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--config" or "-c" when i + 1 < args.Length:
                    config = args[++i];
                    break;
                case "--config" or "-c":
                    error = "--config needs a file path";
                    break;
                case var a when a.StartsWith("--config=", StringComparison.Ordinal):
                    config = a["--config=".Length..];
                    break;
                case "--help" or "-h":
                    help = true;
                    break;
                case "--dashboard":
                    dashboard = true;
                    break;
                default:
                    error = $"unknown argument '{args[i]}'";
                    break;
            }

            if (error is not null)
            {
                break;
            }
        }

        result = new AgentCommandLine(config, help, dashboard);
        return error is null;
    }

    /// <summary>Command-line switches override the file and the environment.</summary>
    public void ApplyTo(IConfigurationBuilder configuration)
    {
        if (Dashboard)
        {
            configuration.AddInMemoryCollection([new("orleans:dashboard", "true")]);
        }
    }
}
