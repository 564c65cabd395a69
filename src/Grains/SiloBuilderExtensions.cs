namespace DaemonEye.Grains;

/// <summary>Registers the event bus grains with a silo.</summary>
public static class SiloBuilderExtensions
{
    /// <summary>
    /// Adds the bus grains. The silo's container must also hold an <see cref="IDeliverySink"/>
    /// (the gateway registers one) and <c>IOptions&lt;BrokerOptions&gt;</c>.
    /// </summary>
    public static ISiloBuilder AddEventBusGrains(this ISiloBuilder builder) =>
        builder.Configure<Orleans.Configuration.GrainCollectionOptions>(o =>
        {
            // Topic grains hold only counters and a cached subscriber set; the registry keeps
            // their sequence across deactivation, so idle topics may be collected.
            o.ClassSpecificCollectionAge[typeof(TopicGrain).FullName!] = TimeSpan.FromMinutes(30);
        });
}
