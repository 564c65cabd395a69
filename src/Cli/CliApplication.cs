using System.CommandLine;
using DaemonEye.Cli.Commands;
using DaemonEye.Cli.Output;
using Spectre.Console;

namespace DaemonEye.Cli;

/// <summary>daemoneye-cli's command tree. Exit codes: 0 success; 1 "no" (topic match), an
/// incomplete run, or an RPC/IPC failure (stderr: <c>&lt;Kind&gt;: &lt;message&gt;</c>, e.g.
/// <c>NotFound: ...</c>); 2 invalid input; 3 the agent could not be reached or refused.</summary>
internal static class CliApplication
{
    public const int Ok = 0;
    public const int No = 1;
    public const int Invalid = 2;
    public const int Unavailable = 3;

    public static RootCommand Build(IAnsiConsole console, TextWriter error, Stream? input = null)
    {
        var config = new Option<string?>("--config")
        {
            Description = "The agent's configuration file, to find its bus socket the way the agent does (default: config/daemoneye.yaml if present; DAEMONEYE_BROKER__SOCKET_PATH overrides)",
            Recursive = true,
        };
        var context = new CliContext(config, console, error) { Input = input ?? Stream.Null };
        var root = new RootCommand("daemoneye-cli: operator commands for the DaemonEye event bus");
        root.Options.Add(config);
        root.Subcommands.Add(TopicCommands.Build(context));
        root.Subcommands.Add(PublishCommand.Build(context));
        root.Subcommands.Add(SubscribeCommand.Build(context));
        root.Subcommands.Add(DurableCommands.BuildStreams(context));
        root.Subcommands.Add(CollectorCommands.BuildStatus(context));
        root.Subcommands.Add(CollectorCommands.BuildCollectors(context));
        root.Subcommands.Add(BenchCommand.Build(context));
        root.Subcommands.Add(ConfigCommands.Build(context));
        root.Subcommands.Add(ObservabilityCommands.BuildMetrics(context));
        root.Subcommands.Add(ObservabilityCommands.BuildHealth(context));
        root.Subcommands.Add(CoordinationCommands.BuildTask(context));
        root.Subcommands.Add(CoordinationCommands.BuildRules(context));
        root.Subcommands.Add(CoordinationCommands.BuildAlerts(context));
        root.Subcommands.Add(PsCommand.Build(context));
        root.Subcommands.Add(RpcCommand.Build(context));
        root.Subcommands.Add(TopCommand.Build(context));
        root.Subcommands.Add(TopicsCommand.Build(context));
        root.Subcommands.Add(CompletionCommand.Build(context));
        root.Subcommands.Add(LogsCommand.Build(context));
        return root;
    }

    /// <summary>Runs with stdout as <paramref name="output"/>, treated as a pipe: no colour, plain tables.</summary>
    public static Task<int> InvokeAsync(string[] args, TextWriter output, TextWriter error, CancellationToken cancellationToken = default) =>
        InvokeAsync(args, Terminal.Create(output), error, cancellationToken);

    /// <summary>Runs with stdout as <paramref name="console"/>: a terminal or a pipe, as it says.</summary>
    public static async Task<int> InvokeAsync(string[] args, IAnsiConsole console, TextWriter error, CancellationToken cancellationToken = default) =>
        await InvokeAsync(args, console, error, Stream.Null, cancellationToken);

    /// <summary>Runs with stdout as <paramref name="console"/> and stdin as <paramref name="input"/>.</summary>
    public static async Task<int> InvokeAsync(string[] args, IAnsiConsole console, TextWriter error, Stream input, CancellationToken cancellationToken = default)
    {
        var root = Build(console, error, input);
        var output = console.Profile.Out.Writer;
        var configuration = new InvocationConfiguration { Output = output, Error = error };
        var parse = root.Parse(args);
        var code = await parse.InvokeAsync(configuration, cancellationToken);

        // A command line that does not parse (an unknown option, a value not among those allowed, a
        // missing required option) has been reported with the usage: it is invalid input, not "no".
        return parse.Errors.Count > 0 ? Invalid : code;
    }
}

/// <summary>What every command needs: the global --config option and where to write (stdout as a console).</summary>
internal sealed record CliContext(Option<string?> Config, IAnsiConsole Console, TextWriter Error)
{
    /// <summary>Stdout as text, for JSON and lines written as they are.</summary>
    public TextWriter Output => Console.Profile.Out.Writer;

    /// <summary>Whether stdout is a terminal (colour when allowed, borders, relative times, live views).</summary>
    public bool IsTerminal => Console.IsTerminal();

    /// <summary>Stdin, as bytes (<c>publish TOPIC -</c>).</summary>
    public Stream Input { get; init; } = Stream.Null;

    /// <summary>The clock for relative times.</summary>
    public TimeProvider Clock { get; init; } = TimeProvider.System;
}
