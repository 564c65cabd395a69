using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace DaemonEye.Silo;

/// <summary>Runs the host until SIGTERM or Ctrl-C and turns failures into clear exit codes.</summary>
internal static class AgentRunner
{
    public static async Task<int> RunAsync(IHost host)
    {
        try
        {
            await host.RunAsync();
            return 0;
        }
        catch (OptionsValidationException ex)
        {
            Console.Error.WriteLine($"daemoneye-agent: the configuration is invalid:");
            foreach (var failure in ex.Failures)
            {
                Console.Error.WriteLine($"  - {failure}");
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
            Console.Error.WriteLine($"daemoneye-agent: failed to start: {ex.Message}");
            return 1;
        }
    }
}

/// <summary>The agent's command line: <c>[--config PATH] [--help]</c>.</summary>
internal sealed record AgentCommandLine(string? ConfigPath, bool ShowHelp)
{
    public const string Usage = """
        usage: daemoneye-agent [--config PATH]

          --config PATH   configuration file (YAML). Default: config/daemoneye.yaml if it exists,
                          else the embedded defaults. Environment variables DAEMONEYE_<SECTION>__<KEY>
                          override file values (e.g. DAEMONEYE_BROKER__SOCKET_PATH).
          --help          show this help
        """;

    public static bool TryParse(string[] args, out AgentCommandLine result, out string? error)
    {
        string? config = null;
        var help = false;
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
                default:
                    error = $"unknown argument '{args[i]}'";
                    break;
            }

            if (error is not null)
            {
                break;
            }
        }

        result = new AgentCommandLine(config, help);
        return error is null;
    }
}
