using Microsoft.Extensions.Options;

namespace DaemonEye.Gateway;

/// <summary>Options that never change, as an <see cref="IOptionsMonitor{TOptions}"/> (tests, and components built outside the container).</summary>
internal sealed class FixedOptions<T>(T value) : IOptionsMonitor<T>
{
    public T CurrentValue => value;

    public T Get(string? name) => value;

    public IDisposable? OnChange(Action<T, string?> listener) => null;
}
