using Microsoft.Extensions.DependencyInjection.Extensions;

namespace DaemonEye.Grains;

/// <summary>Registers the event bus grains with a silo.</summary>
public static class SiloBuilderExtensions
{
    /// <summary>
    /// Adds the bus grains. The silo's container must also hold an <see cref="IDeliverySink"/>
    /// (the gateway registers one) and <c>IOptions&lt;BrokerOptions&gt;</c>.
    /// </summary>
    public static ISiloBuilder AddEventBusGrains(this ISiloBuilder builder)
    {
        // The routing table the Topic grains own and the gateway publishes through.
        builder.Services.TryAddSingleton(TimeProvider.System);
        builder.Services.TryAddSingleton<TopicRoutes>();
        return builder;
    }
}
