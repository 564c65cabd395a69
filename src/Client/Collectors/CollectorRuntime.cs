namespace DaemonEye.Client;

/// <summary>Process-wide runtime settings a collector may opt into; call them first thing in <c>Main</c>.</summary>
public static class CollectorRuntime
{
    /// <summary>The .NET runtime's switch; read once, when the process makes its first socket.</summary>
    public const string InlineCompletionsVariable = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    /// <summary>
    /// Runs socket completions on the runtime's event thread instead of handing each to the thread
    /// pool. The SDK's bus reader and writer never block, so a collector then reads a request,
    /// answers it and sends the answer without a thread hand-off (docs/benchmarks.md: the
    /// collector's CPU per HealthCheck fell by about a third). It applies to every
    /// socket in the process: do not use it when the collector's own code has socket continuations
    /// that block. It must run before the process's first socket. A value the operator has already
    /// set in the environment (<c>0</c> to opt out) is left alone.
    /// </summary>
    /// <returns>True when inline completions are on.</returns>
    public static bool UseInlineSocketCompletions()
    {
        if (Environment.GetEnvironmentVariable(InlineCompletionsVariable) is not { Length: > 0 } set)
        {
            Environment.SetEnvironmentVariable(InlineCompletionsVariable, "1");
            return true;
        }

        return set == "1";
    }
}
