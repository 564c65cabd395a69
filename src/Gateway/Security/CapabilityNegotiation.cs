using System.Globalization;
using DaemonEye.Protocol.V1;
using DaemonEye.Topics;

namespace DaemonEye.Gateway.Security;

/// <summary>
/// The agent's half of capability negotiation: from the Hello and the policy the handshake decided,
/// what the connection is granted (sent in Welcome.granted, recorded in the collector directory) and
/// what it asked for and did not get, with the reason (Welcome.refused).
/// </summary>
internal static class CapabilityNegotiation
{
    /// <summary>Capability kinds a client may declare in Hello.</summary>
    public const string KnownKinds = "task:<task type>, publish:<pattern under events.#>, capacity:<1 to 1000000>";

    public static (List<string> Granted, List<CapabilityRefusal> Refused) Negotiate(Hello hello, AccessPolicy policy)
    {
        var granted = new List<string> { "role:" + RoleName(policy.Role) };
        var refused = new List<CapabilityRefusal>();
        var requested = hello.Role == Role.Unspecified ? Role.Client : hello.Role;
        if (requested != policy.Role)
        {
            refused.Add(new CapabilityRefusal
            {
                Capability = "role:" + RoleName(requested),
                Reason = $"uid is not the agent's or root: granted role {RoleName(policy.Role)} (security.other_uid_role)",
            });
        }

        foreach (var pattern in policy.PublishPatterns)
        {
            granted.Add("publish:" + pattern);
        }

        if (policy.PublishesAnything)
        {
            granted.Add("publish:#");
        }
        else if (policy.Role == Role.Client)
        {
            granted.Add("publish:" + WellKnownTopics.AllEvents);
        }

        granted.AddRange(policy.SubscribesAnything ? ["subscribe:#"] : policy.SubscribePatterns.Select(p => "subscribe:" + p));
        granted.Add(policy.Role switch
        {
            Role.Collector => "rpc:answers " + WellKnownTopics.CollectorPrefix + policy.CollectorId,
            Role.Subscriber => "rpc:none",
            _ => policy.Operates ? "rpc:operate" : "rpc:read",
        });
        if (policy.Role == Role.Collector && policy.Operates)
        {
            granted.Add("rpc:operate"); // security.collector_callers: this collector may also make calls
        }

        foreach (var capability in hello.Capabilities)
        {
            if (capability.StartsWith("publish:", StringComparison.Ordinal))
            {
                if (policy.Role != Role.Collector)
                {
                    refused.Add(new CapabilityRefusal { Capability = capability, Reason = $"only collectors declare publish domains; the {RoleName(policy.Role)} role's are fixed" });
                }

                continue; // A collector's valid ones are in its policy; an invalid one refused the handshake.
            }

            if (policy.Role != Role.Collector)
            {
                refused.Add(new CapabilityRefusal { Capability = capability, Reason = $"only collectors declare capabilities; the {RoleName(policy.Role)} role's are fixed" });
            }
            else if (capability.StartsWith("task:", StringComparison.Ordinal) && capability.Length > 5)
            {
                granted.Add(capability);
            }
            else if (capability.StartsWith("capacity:", StringComparison.Ordinal))
            {
                if (int.TryParse(capability.AsSpan(9), NumberStyles.None, CultureInfo.InvariantCulture, out var capacity) && capacity is > 0 and <= 1_000_000)
                {
                    granted.Add(capability);
                }
                else
                {
                    refused.Add(new CapabilityRefusal { Capability = capability, Reason = "capacity must be a whole number from 1 to 1000000; the default capacity applies" });
                }
            }
            else
            {
                refused.Add(new CapabilityRefusal { Capability = capability, Reason = $"not a capability the agent knows; known kinds: {KnownKinds}" });
            }
        }

        return (granted, refused);
    }

    public static string RoleName(Role role) => role switch
    {
        Role.Cli => "cli",
        Role.Collector => "collector",
        Role.Subscriber => "subscriber",
        Role.Client => "client",
        _ => "unspecified",
    };
}
