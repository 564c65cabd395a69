using System.Collections.Concurrent;
using DaemonEye.Configuration;
using DaemonEye.Grains;
using Microsoft.Extensions.DependencyInjection;
using Orleans.TestingHost;

namespace DaemonEye.Server.Tests;

/// <summary>What a Topic grain handed to the delivery path, as the gateway would receive it.</summary>
public sealed record Delivered(long ConnectionId, uint[] SubscriptionIds, string Topic, ulong FirstSequence, int Count, int Accepted);

/// <summary>
/// The delivery path of the test silo: records every offer. Each connection can be given a
/// capacity (messages it accepts in all) to exercise drop accounting; unknown connections
/// accept everything; closed ones return -1, like the gateway's directory.
/// </summary>
public sealed class RecordingSink : IDeliverySink
{
    private readonly ConcurrentQueue<Delivered> _offers = new();
    private readonly ConcurrentDictionary<long, int> _capacity = new();
    private readonly ConcurrentDictionary<long, bool> _closed = new();

    public IReadOnlyList<Delivered> For(long connectionId) => [.. _offers.Where(o => o.ConnectionId == connectionId)];

    /// <summary>Every offer of <paramref name="topic"/>, in the order they were made.</summary>
    public IReadOnlyList<Delivered> OnTopic(string topic) => [.. _offers.Where(o => o.Topic == topic)];

    public void SetCapacity(long connectionId, int messages) => _capacity[connectionId] = messages;

    public void Close(long connectionId) => _closed[connectionId] = true;

    public int Deliver(DeliveryTarget target, PublishBatch batch, ulong firstSequence)
    {
        if (_closed.ContainsKey(target.ConnectionId))
        {
            return -1;
        }

        var accepted = batch.Count;
        if (_capacity.TryGetValue(target.ConnectionId, out var left))
        {
            accepted = Math.Min(left, batch.Count);
            _capacity[target.ConnectionId] = left - accepted;
        }

        _offers.Enqueue(new Delivered(target.ConnectionId, target.SubscriptionIds, batch.Topic, firstSequence, batch.Count, accepted));
        return accepted;
    }
}

/// <summary>One in-process test silo with the bus grains and a <see cref="RecordingSink"/>.</summary>
public abstract class ClusterFixtureBase : IAsyncLifetime
{
    private static readonly ConcurrentDictionary<string, (RecordingSink Sink, int MaxSubscribers)> Settings = new();
    private readonly string _key = Guid.NewGuid().ToString("N");

    protected ClusterFixtureBase(int maxSubscribers) => Settings[_key] = (new RecordingSink(), maxSubscribers);

    public TestCluster Cluster { get; private set; } = null!;

    public RecordingSink Sink => Settings[_key].Sink;

    public IGrainFactory Grains => Cluster.GrainFactory;

    private long _nextConnection;

    /// <summary>A connection id no other test in this cluster uses.</summary>
    public long NewConnectionId() => Interlocked.Increment(ref _nextConnection);

    public async Task InitializeAsync()
    {
        var builder = new TestClusterBuilder(1);
        builder.Properties["fixture"] = _key;
        builder.AddSiloBuilderConfigurator<Configurator>();
        Cluster = builder.Build();
        await Cluster.DeployAsync();
    }

    public async Task DisposeAsync()
    {
        await Cluster.StopAllSilosAsync();
        await Cluster.DisposeAsync();
        Settings.TryRemove(_key, out _);
    }

    private sealed class Configurator : ISiloConfigurator
    {
        public void Configure(ISiloBuilder siloBuilder)
        {
            // TestClusterBuilder.Properties reach each silo's configuration.
            var key = siloBuilder.Configuration["fixture"] ?? throw new InvalidOperationException("fixture key missing");
            var (sink, max) = Settings[key];
            siloBuilder.AddEventBusGrains();
            siloBuilder.Services.AddSingleton<IDeliverySink>(sink);
            siloBuilder.Services.Configure<BrokerOptions>(o => o.MaxSubscribers = max);
        }
    }
}

public sealed class ClusterFixture() : ClusterFixtureBase(maxSubscribers: 10_000);

public sealed class SmallClusterFixture() : ClusterFixtureBase(maxSubscribers: 3);
