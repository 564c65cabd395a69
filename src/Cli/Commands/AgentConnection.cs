using System.CommandLine;
using DaemonEye.Client;
using DaemonEye.Protocol.V1;

namespace DaemonEye.Cli.Commands;

/// <summary>Connecting to the agent the way every command does, with errors a person can act on.</summary>
internal static class AgentConnection
{
    public static BusClientOptions Options(CliContext context, ParseResult parse, string suffix = "") => new()
    {
        ConfigPath = parse.GetValue(context.Config),
        ClientId = $"cli-{Environment.ProcessId}{suffix}",
        Role = Role.Cli,
        ClientVersion = $"daemoneye-cli/{typeof(AgentConnection).Assembly.GetName().Version?.ToString(3)}",
    };

    /// <summary>Connects, or writes why not to stderr and returns null.</summary>
    public static async Task<BusClient?> ConnectAsync(CliContext context, BusClientOptions options, CancellationToken cancellationToken)
    {
        try
        {
            return await BusClient.ConnectAsync(options, cancellationToken);
        }
        catch (BusException e)
        {
            // A missing --config file (FileNotFoundException) is an input error: RunAsync reports it.
            context.Error.WriteLine($"error: {e.Message}");
        }

        return null;
    }

    /// <summary>Runs a command body, turning the expected failures into a message and an exit code.</summary>
    public static async Task<int> RunAsync(CliContext context, Func<Task<int>> body)
    {
        try
        {
            return await body();
        }
        catch (OperationCanceledException)
        {
            return 130;
        }
        catch (FileNotFoundException e)
        {
            context.Error.WriteLine($"error: {e.Message}");
            return CliApplication.Invalid;
        }
        catch (FormatException e)
        {
            context.Error.WriteLine($"error: {e.Message}");
            return CliApplication.Invalid;
        }
        catch (ArgumentException e)
        {
            context.Error.WriteLine($"error: {e.Message}");
            return CliApplication.Invalid;
        }
        catch (BusException e)
        {
            context.Error.WriteLine($"error: {e.Message}");
            return CliApplication.Unavailable;
        }
    }
}
