using BenchmarkDotNet.Running;

// dotnet run -c Release --project bench/DaemonEye.Benchmarks -- --filter '*Matcher*' [--job short]
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
