using DaemonEye.Protocol.Collector.V1;
using DaemonEye.Protocol.V1;
using Google.Protobuf;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;

namespace DaemonEye.Client;

/// <summary>An RPC handler: gets the call, returns the response payload.</summary>
public delegate ValueTask<ByteString> CollectorRpcHandler(CollectorCall call, CancellationToken cancellationToken);

public static class CollectorServiceCollectionExtensions
{
    /// <summary>
    /// Makes this host a DaemonEye collector: it connects to the agent's bus as ROLE_COLLECTOR,
    /// declares its capabilities, publishes heartbeats, serves RPCs (HealthCheck, GetCapabilities,
    /// Stop by default; others through the returned builder), and stops when its supervising agent
    /// is gone. Register it before the collector's own hosted services, so they start connected.
    /// Console log records are written on one line each (the agent logs a collector's stdout by line).
    /// </summary>
    public static CollectorBuilder AddDaemonEyeCollector(this IServiceCollection services, Action<CollectorOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        var options = services.AddOptions<CollectorOptions>();
        if (configure is not null)
        {
            options.Configure(configure);
        }

        options.PostConfigure(o => o.ApplyEnvironment(Environment.GetEnvironmentVariable));
        options.ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<CollectorOptions>, CollectorOptionsValidator>());
        var handlers = new CollectorHandlers();
        services.AddSingleton(handlers);
        services.TryAddSingleton(TimeProvider.System);

        // The agent copies a collector's stdout into its own log line by line: one record, one line.
        services.Configure<SimpleConsoleFormatterOptions>(o => o.SingleLine = true);
        services.TryAddSingleton<CollectorHost>();
        services.TryAddSingleton<ICollectorContext>(sp => sp.GetRequiredService<CollectorHost>());
        services.AddHostedService(sp => sp.GetRequiredService<CollectorHost>());
        return new CollectorBuilder(services, handlers);
    }

    /// <summary>Runs a collector host and returns its exit code: 0 after a Stop RPC, a signal or the
    /// supervisor's disappearance; 1 when it could not register with the agent.</summary>
    public static async Task<int> RunCollectorAsync(this IHost host, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(host);
        try
        {
            await host.RunAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (BusException)
        {
            // Logged by the host: the agent was not reachable or refused the registration.
            return 1;
        }
        catch (OptionsValidationException e)
        {
            await Console.Error.WriteLineAsync($"invalid collector options: {e.Message}").ConfigureAwait(false);
            return 2;
        }

        return Environment.ExitCode;
    }
}

/// <summary>Registers a collector's RPC handlers. Operations without a handler answer InvalidOperation.</summary>
public sealed partial class CollectorBuilder
{
    private readonly CollectorHandlers _handlers;

    internal CollectorBuilder(IServiceCollection services, CollectorHandlers handlers)
    {
        Services = services;
        _handlers = handlers;
    }

    public IServiceCollection Services { get; }

    /// <summary>Replaces the default HealthCheck answer (healthy, status "ok", uptime).</summary>
    public CollectorBuilder HandleHealthCheck(Func<CollectorCall, CancellationToken, ValueTask<HealthCheckResponse>> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        return Handle(RpcOperation.HealthCheck, async (call, ct) => (await handler(call, ct).ConfigureAwait(false)).ToByteString());
    }

    /// <summary>
    /// Applies UpdateConfig settings: all or none; a bad one is refused by throwing
    /// <see cref="CollectorRpcException"/> (InvalidOperation) with a message naming the key, the value
    /// and what is allowed, which the caller sees as is. A request without settings is a read: the
    /// handler is called with none. The answer is an UpdateConfigResponse holding what
    /// <see cref="ReportSettings"/> reports (empty without it). Without a handler UpdateConfig answers InvalidOperation.
    /// </summary>
    public CollectorBuilder HandleUpdateConfig(Func<UpdateConfigRequest, CollectorCall, CancellationToken, ValueTask> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        return Handle(RpcOperation.UpdateConfig, async (call, ct) =>
        {
            await handler(call.Payload(UpdateConfigRequest.Parser), call, ct).ConfigureAwait(false);
            var response = new UpdateConfigResponse();
            if (_settings is { } report)
            {
                foreach (var (key, value) in report(call.Services))
                {
                    response.Settings[key] = value;
                }
            }

            return response.ToByteString();
        });
    }

    private Func<IServiceProvider, IEnumerable<KeyValuePair<string, string>>>? _settings;

    /// <summary>
    /// The collector's live settings, as UpdateConfig keys and values: sent in every UpdateConfig answer
    /// (what <c>daemoneye-cli collectors config &lt;id&gt;</c> shows, and what the agent announces on
    /// control.collector.config after a change).
    /// </summary>
    public CollectorBuilder ReportSettings(Func<IServiceProvider, IEnumerable<KeyValuePair<string, string>>> settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        _settings = settings;
        return this;
    }

    /// <summary>Replaces the default GetCapabilities answer (built from <see cref="CollectorOptions"/>).</summary>
    public CollectorBuilder HandleGetCapabilities(Func<CollectorCall, CancellationToken, ValueTask<Capabilities>> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        return Handle(RpcOperation.GetCapabilities, async (call, ct) => (await handler(call, ct).ConfigureAwait(false)).ToByteString());
    }

    /// <summary>Replaces the default Stop behaviour (answer OK, then stop the host, exit code 0). The
    /// handler runs before the answer is sent; it decides itself whether and how the process ends.</summary>
    public CollectorBuilder HandleStop(Func<StopRequest, CollectorCall, CancellationToken, ValueTask> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        _handlers.StopReplaced = true;
        return Handle(RpcOperation.Stop, async (call, ct) =>
        {
            await handler(call.Payload(StopRequest.Parser), call, ct).ConfigureAwait(false);
            return ByteString.Empty;
        });
    }

    /// <summary>Handles any operation (e.g. Start or Restart), replacing a default.</summary>
    public CollectorBuilder Handle(RpcOperation operation, CollectorRpcHandler handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        if (operation == RpcOperation.Unspecified)
        {
            throw new ArgumentException("RPC_OPERATION_UNSPECIFIED cannot have a handler", nameof(operation));
        }

        _handlers.ByOperation[operation] = handler;
        return this;
    }
}

/// <summary>The handlers registered through <see cref="CollectorBuilder"/>.</summary>
internal sealed class CollectorHandlers
{
    public Dictionary<RpcOperation, CollectorRpcHandler> ByOperation { get; } = [];

    public bool StopReplaced { get; set; }
}

/// <summary>Validates <see cref="CollectorOptions"/>, reporting every failure together.</summary>
public sealed class CollectorOptionsValidator : IValidateOptions<CollectorOptions>
{
    public ValidateOptionsResult Validate(string? name, CollectorOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var failures = options.Validate().ToList();
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
