using DaemonEye.Cli;
using DaemonEye.Cli.Output;

await using var stdin = Console.OpenStandardInput();
return await CliApplication.InvokeAsync(args, Terminal.ForStdout(), Console.Error, stdin);
