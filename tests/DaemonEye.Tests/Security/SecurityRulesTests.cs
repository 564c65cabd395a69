using DaemonEye.Configuration;
using DaemonEye.Protocol;
using DaemonEye.Topics;

namespace DaemonEye.Tests.Security;

/// <summary>The pieces of the access rules that need no agent: pattern coverage, correlation id
/// format, and the security section's validation.</summary>
public sealed class SecurityRulesTests
{
    [Theory]
    [InlineData("events.#", "events.process.#", true)]
    [InlineData("events.#", "events", true)]
    [InlineData("events.#", "events.+.lifecycle", true)]
    [InlineData("events.#", "control.#", false)]
    [InlineData("events.#", "#", false)]
    [InlineData("events.#", "+.process", false)]
    [InlineData("events.process.#", "events.+", false)]
    [InlineData("control.collector.procmond.#", "control.collector.procmond", true)]
    [InlineData("control.collector.procmond.#", "control.collector.+", false)]
    [InlineData("control.health.+.procmond", "control.health.heartbeat.procmond", true)]
    [InlineData("control.health.+.procmond", "control.health.+.procmond", true)]
    [InlineData("control.health.+.procmond", "control.health.heartbeat.other", false)]
    [InlineData("control.health.+.procmond", "control.health.#", false)]
    [InlineData("control.health.+.procmond", "control.health.heartbeat", false)]
    [InlineData("a.b", "a.b.c", false)]
    public void Covers_means_every_topic_the_inner_pattern_matches_the_outer_one_matches(string outer, string inner, bool expected)
    {
        Assert.Equal(expected, TopicRules.Covers(outer, inner));
    }

    [Theory]
    [InlineData("", true)]
    [InlineData("c-1", true)]
    [InlineData("0123456789abcdef0123456789abcdef", true)]
    [InlineData("task:scan/1@host+x=y", true)]
    [InlineData("two words", false)]
    [InlineData("tab\t", false)]
    [InlineData("line\nbreak", false)]
    [InlineData("ünï", false)]
    public void Correlation_ids_are_printable_ascii_without_spaces(string id, bool valid)
    {
        Assert.Equal(valid, CorrelationRules.IsValidOrEmpty(id));
        Assert.Equal(valid, CorrelationRules.IsValidOrEmpty(System.Text.Encoding.UTF8.GetBytes(id)));
        Assert.Equal(valid, CorrelationRules.Problem("correlation_id", id) is null);
    }

    [Fact]
    public void Correlation_ids_are_at_most_128_characters()
    {
        Assert.True(CorrelationRules.IsValidOrEmpty(new string('a', 128)));
        Assert.False(CorrelationRules.IsValidOrEmpty(new string('a', 129)));
        Assert.Contains("129 characters", CorrelationRules.Problem("correlation_id", new string('a', 129)));
    }

    [Fact]
    public void The_default_security_section_is_valid()
    {
        Assert.Empty(new SecurityOptions().Validate());
    }

    [Fact]
    public void Every_bad_security_value_is_reported_with_its_key_and_what_is_allowed()
    {
        var options = new SecurityOptions
        {
            AllowedUids = ["1000", "x"],
            AllowedGids = ["-3"],
            SocketGroup = "no-such-group-de-test",
            OtherUidRole = "root",
            CollectorCallers = ["coordinator", "not.an.id"],
            RegistrationTokens = { ["procmond"] = "0123456789abcdef", ["Bad"] = "has a space in it!", ["ok"] = "short" },
        };

        var errors = options.Validate().ToList();

        Assert.Equal(
        [
            "security.socket_group is 'no-such-group-de-test'; no such group on this host (give a group name or a numeric gid from /etc/group)",
            "security.allowed_uids[1] is 'x'; allowed: a numeric user id, 0 to 4294967294",
            "security.allowed_gids[0] is '-3'; allowed: a numeric group id, 0 to 4294967294",
            "security.other_uid_role is 'root'; allowed: subscriber, client",
            "security.collector_callers[1] is 'not.an.id'; allowed: a collector id, 1 to 64 characters from [a-z0-9_-]",
            "security.registration_tokens has collector id 'Bad'; a collector id is 1 to 64 characters from [a-z0-9_-]",
            "security.registration_tokens.Bad is 18 characters; a token is 16 to 256 printable ASCII characters without spaces (e.g. from: openssl rand -hex 32)",
            "security.registration_tokens.ok is 5 characters; a token is 16 to 256 printable ASCII characters without spaces (e.g. from: openssl rand -hex 32)",
        ], errors);
        Assert.Equal([1000u], options.AllowedUidValues());
    }

    [Fact]
    public void The_socket_group_is_a_name_or_a_number()
    {
        Assert.Equal(0u, new SecurityOptions { SocketGroup = "root" }.ResolveSocketGroupId());
        Assert.Equal(4242u, new SecurityOptions { SocketGroup = "4242" }.ResolveSocketGroupId());
        Assert.Null(new SecurityOptions().ResolveSocketGroupId());
    }

    [Fact]
    public void The_new_broker_limits_are_validated()
    {
        var errors = new BrokerOptions { MaxConnections = 0, MaxSubscriptionsPerConnection = 0, MaxSubscribersPerTopic = 0 }.Validate().ToList();

        Assert.Contains("broker.max_connections is 0; allowed: 1 to 100000", errors);
        Assert.Contains("broker.max_subscriptions_per_connection is 0; allowed: 1 to 1000000", errors);
        Assert.Contains("broker.max_subscribers_per_topic is 0; allowed: 1 to 1000000", errors);
    }
}
