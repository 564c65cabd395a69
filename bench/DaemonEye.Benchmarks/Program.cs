using BenchmarkDotNet.Running;

// dotnet run -c Release --project bench/DaemonEye.Benchmarks -- --filter '*Matcher*' [--job short]
BenchmarkSwitcher.FromAssembly(typeof(DaemonEye.Benchmarks.TopicRulesBenchmarks).Assembly).Run(args);
