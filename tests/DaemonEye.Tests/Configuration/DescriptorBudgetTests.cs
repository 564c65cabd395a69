using DaemonEye.Configuration;

namespace DaemonEye.Tests.Configuration;

/// <summary>The descriptors the configuration may need, against RLIMIT_NOFILE (checked at the agent's start-up).</summary>
public sealed class DescriptorBudgetTests
{
    [Fact]
    public void The_descriptor_budget_adds_every_connection_and_the_headroom_and_names_the_keys_when_over_the_limit()
    {
        var broker = new BrokerOptions { MaxConnections = 256, ReservedCollectorConnections = 16 };
        var ipc = new IpcOptions { MaxConnections = 64 };

        Assert.Equal(256 + 16 + 64 + DescriptorBudget.Headroom + (2 * DescriptorBudget.PerCollector), DescriptorBudget.Needed(broker, ipc, collectors: 2));
        Assert.Null(DescriptorBudget.Problem(broker, ipc, 2, 65536));
        Assert.Null(DescriptorBudget.Problem(broker, ipc, 2, 856));

        var problem = DescriptorBudget.Problem(broker, ipc, 2, 855);
        Assert.NotNull(problem);
        Assert.Contains("broker.max_connections (256) + broker.reserved_collector_connections (16) + ipc.max_connections (64)", problem);
        Assert.Contains("+ 512 descriptors of headroom + 4 per collector (2) = 856 file descriptors, more than the agent's open-file limit RLIMIT_NOFILE (855)", problem);
        Assert.Contains("LimitNOFILE=", problem);
    }
}
