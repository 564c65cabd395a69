namespace DaemonEye.Client;

/// <summary>Process-wide runtime settings a collector may opt into; call them first thing in <c>Main</c>.</summary>
public static class CollectorRuntime
{
    /// <summary>The switch, read once by the runtime when the process makes its first socket, and by
    /// the SDK's reactor when the process makes its first bus connection.</summary>
    public const string InlineCompletionsVariable = DaemonEye.Networking.SocketReactor.InlineCompletionsVariable;

    /// <summary>
    /// Runs socket completions on the event thread instead of handing each to the thread pool: for
    /// the bus client that is the SDK's <see cref="DaemonEye.Networking.SocketReactor"/>, for other
    /// sockets the runtime's engine. The SDK's bus reader and writer never block, so a collector then reads a request,
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
