using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;

namespace DaemonEye.Silo;

/// <summary>
/// The agent's silo is a cluster of one: it has no other silo to talk to and no Orleans client
/// (the CLI and the collectors speak protobuf to the Unix sockets). So Orleans is given a transport
/// that opens no socket at all: its silo-to-silo listener (and the client gateway's, which is off
/// anyway) binds nothing and accepts nothing, and an outbound silo connection is refused before a
/// socket exists. Messages between the grains of this silo never use a connection; Orleans
/// delivers them in the process. Nothing of Orleans can be reached by any other process, whatever
/// its uid. docs/security.md §1 says why this and not a Unix-socket transport or mutual TLS.
/// </summary>
internal static partial class ClosedSilo
{
    /// <summary>
    /// The port in the silo's address. Orleans needs one to name the silo; nothing binds it (see
    /// <see cref="ClosedSilo"/>), so any value does and another process may use it.
    /// </summary>
    public const int NominalSiloPort = 11111;

    /// <summary>One silo on 127.0.0.1 (in name only), in-memory clustering, no client gateway, no socket, and no
    /// 100 ms stall sampling for probes it never makes (<see cref="StallDetectorTrim"/>).</summary>
    public static ISiloBuilder UseClosedSingleSilo(this ISiloBuilder silo)
    {
        silo.UseLocalhostClustering(siloPort: NominalSiloPort, gatewayPort: 0, serviceId: "daemoneye-agent", clusterId: "daemoneye");
        silo.Configure<EndpointOptions>(o =>
        {
            o.AdvertisedIPAddress = IPAddress.Loopback;
            o.SiloPort = NominalSiloPort;
            o.SiloListeningEndpoint = new IPEndPoint(IPAddress.Loopback, NominalSiloPort);
            o.GatewayPort = 0;
            o.GatewayListeningEndpoint = null;
        });
        silo.ConfigureServices(ReplaceTransport);
        silo.ConfigureServices(s => s.AddHostedService<StallDetectorTrim>());
        return silo;
    }

    /// <summary>
    /// Orleans resolves its listener and connection factories as keyed services, one key per role
    /// (silo listener, gateway listener, silo connections); the keys are internal to Orleans. Every
    /// keyed registration of either factory type is found in the service collection and a closed
    /// one is registered after it under the same key (the last registration of a key wins). If
    /// Orleans registers none any more, start-up fails rather than run with an unknown transport.
    /// </summary>
    internal static void ReplaceTransport(IServiceCollection services)
    {
        var listenerKeys = KeysOf<IConnectionListenerFactory>(services);
        var connectionKeys = KeysOf<IConnectionFactory>(services);
        if (listenerKeys.Count == 0 || connectionKeys.Count == 0)
        {
            throw new InvalidOperationException(
                $"Orleans registered {listenerKeys.Count} keyed connection listener factories and {connectionKeys.Count} keyed connection factories; " +
                "the agent expects at least one of each to replace, so that its silo opens no socket. The Orleans version is not one this agent knows.");
        }

        foreach (var key in listenerKeys)
        {
            services.AddKeyedSingleton<IConnectionListenerFactory>(key, (sp, _) => new ClosedListenerFactory(sp.GetRequiredService<ILogger<ClosedListenerFactory>>()));
        }

        foreach (var key in connectionKeys)
        {
            services.AddKeyedSingleton<IConnectionFactory>(key, new RefusingConnectionFactory());
        }
    }

    private static List<object> KeysOf<T>(IServiceCollection services) =>
        [.. services.Where(d => d.ServiceType == typeof(T) && d.IsKeyedService && d.ServiceKey is not null)
            .Select(d => d.ServiceKey!)
            .Distinct()];

    /// <summary>Binds nothing; its listener accepts nothing until Orleans unbinds it.</summary>
    internal sealed partial class ClosedListenerFactory(ILogger<ClosedListenerFactory> logger) : IConnectionListenerFactory
    {
        public ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default)
        {
            LogClosed(logger, endpoint);
            return ValueTask.FromResult<IConnectionListener>(new ClosedListener(endpoint));
        }

        [LoggerMessage(EventId = 20, Level = LogLevel.Debug, Message = "Orleans asked to listen on {Endpoint}; nothing is bound (a single silo needs no connection)")]
        private static partial void LogClosed(ILogger logger, EndPoint endpoint);
    }

    /// <summary>A listener without a socket: <see cref="AcceptAsync"/> ends (null: no more connections) when it is unbound.</summary>
    internal sealed class ClosedListener(EndPoint endpoint) : IConnectionListener
    {
        private readonly TaskCompletionSource<ConnectionContext?> _unbound = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public EndPoint EndPoint { get; } = endpoint;

        public ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default) =>
            new(_unbound.Task.WaitAsync(cancellationToken));

        public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
        {
            _unbound.TrySetResult(null);
            return ValueTask.CompletedTask;
        }

        public ValueTask DisposeAsync()
        {
            _unbound.TrySetResult(null);
            return ValueTask.CompletedTask;
        }
    }

    /// <summary>Refuses every outbound silo connection without opening a socket: there is no other silo.</summary>
    internal sealed class RefusingConnectionFactory : IConnectionFactory
    {
        public ValueTask<ConnectionContext> ConnectAsync(EndPoint endpoint, CancellationToken cancellationToken = default) =>
            ValueTask.FromException<ConnectionContext>(new ConnectionAbortedException(
                $"the agent's silo makes no network connections (asked for {endpoint}): it is a cluster of one"));
    }
}
