using DaemonEye.Configuration;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace DaemonEye.Tests.Configuration;

public sealed class LiveConfigurationTests
{
    private static IConfiguration Config(params (string Key, string Value)[] values) =>
        new ConfigurationBuilder().AddInMemoryCollection(values.Select(v => new KeyValuePair<string, string?>(v.Key, v.Value))).Build();

    [Fact]
    public void A_reload_applies_live_keys_and_the_collectors_list_and_keeps_every_other_key_as_the_agent_started()
    {
        var live = new LiveConfiguration(Config(
            ("broker:socket_path", "/run/a/bus.sock"), ("broker:max_subscriptions_per_connection", "2"),
            ("logging:level", "information"), ("collectors:0:id", "a"), ("security:allowed_uids:0", "1000")));
        var configuration = new ConfigurationManager();
        configuration.Sources.Add(live);
        var services = new ServiceCollection();
        services.AddOptions<BrokerOptions>().Bind(configuration.GetSection(BrokerOptions.SectionName));
        using var provider = services.BuildServiceProvider();
        var broker = provider.GetRequiredService<IOptionsMonitor<BrokerOptions>>();
        var changes = 0;
        using var subscription = broker.OnChange(_ => changes++);

        var next = Config(
            ("broker:socket_path", "/run/b/bus.sock"), ("broker:max_subscriptions_per_connection", "5"),
            ("logging:level", "debug"), ("collectors:0:id", "a"), ("collectors:1:id", "b"), ("security:allowed_uids:0", "1001"));
        var plan = live.Plan(next);
        Assert.Equal(["broker.max_subscriptions_per_connection", "logging.level"], plan.Live);
        Assert.Equal(["broker.socket_path", "security.allowed_uids"], plan.NeedRestart);

        live.Apply(next);
        Assert.Equal(1, changes);
        Assert.Equal((5, "/run/a/bus.sock"), (broker.CurrentValue.MaxSubscriptionsPerConnection, broker.CurrentValue.SocketPath));
        Assert.Equal("debug", configuration["logging:level"]);
        Assert.Equal("b", configuration["collectors:1:id"]);
        Assert.Equal("1000", configuration["security:allowed_uids:0"]);

        // The same file again: the keys that need a restart are still named (they never took effect); nothing live changes.
        plan = live.Plan(next);
        Assert.Empty(plan.Live);
        Assert.Equal(["broker.socket_path", "security.allowed_uids"], plan.NeedRestart);
    }
}
