using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DaemonEye.Client;

public static class ServiceCollectionExtensions
{
    /// <summary>
    /// Registers the bus client: <see cref="BusClientOptions"/> (validated, every failure reported at
    /// once), and <see cref="BusConnection"/>, a hosted service that connects at start-up and
    /// disposes the client at shutdown. Inject <see cref="BusConnection"/> and use its
    /// <see cref="BusConnection.Client"/> (or <see cref="BusConnection.GetClientAsync"/>).
    /// </summary>
    public static IServiceCollection AddDaemonEyeBusClient(this IServiceCollection services, Action<BusClientOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        var builder = services.AddOptions<BusClientOptions>();
        if (configure is not null)
        {
            builder.Configure(configure);
        }

        builder.ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<BusClientOptions>, BusClientOptionsValidator>());
        services.TryAddSingleton<BusConnection>();
        services.AddHostedService(sp => sp.GetRequiredService<BusConnection>());
        return services;
    }
}

/// <summary>Validates <see cref="BusClientOptions"/>, reporting every failure together.</summary>
public sealed class BusClientOptionsValidator : IValidateOptions<BusClientOptions>
{
    public ValidateOptionsResult Validate(string? name, BusClientOptions options)
    {
        var failures = options.Validate().ToList();
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}

/// <summary>The application's one <see cref="BusClient"/>, connected when the host starts.</summary>
public sealed class BusConnection(IOptions<BusClientOptions> options, ILoggerFactory? loggerFactory = null) : IHostedService, IAsyncDisposable
{
    private readonly SemaphoreSlim _gate = new(1, 1);
    private BusClient? _client;

    /// <summary>The connected client; throws before the host has started.</summary>
    public BusClient Client => _client ?? throw new InvalidOperationException("the bus client is not connected yet: the host has not started (or use GetClientAsync)");

    /// <summary>The connected client, connecting first if needed.</summary>
    public async ValueTask<BusClient> GetClientAsync(CancellationToken cancellationToken = default)
    {
        if (_client is { } client)
        {
            return client;
        }

        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_client is null)
            {
                var value = options.Value;
                value.LoggerFactory ??= loggerFactory;
                _client = await BusClient.ConnectAsync(value, cancellationToken).ConfigureAwait(false);
            }

            return _client;
        }
        finally
        {
            _gate.Release();
        }
    }

    public async Task StartAsync(CancellationToken cancellationToken) => await GetClientAsync(cancellationToken).ConfigureAwait(false);

    public async Task StopAsync(CancellationToken cancellationToken) => await DisposeAsync().ConfigureAwait(false);

    public async ValueTask DisposeAsync()
    {
        var client = Interlocked.Exchange(ref _client, null);
        if (client is not null)
        {
            await client.DisposeAsync().ConfigureAwait(false);
        }
    }
}
