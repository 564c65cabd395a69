using DaemonEye.Cli;

return await CliApplication.InvokeAsync(args, Console.Out, Console.Error);
