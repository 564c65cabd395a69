using DaemonEye.Cli;
using DaemonEye.Cli.Output;

return await CliApplication.InvokeAsync(args, Terminal.ForStdout(), Console.Error);
