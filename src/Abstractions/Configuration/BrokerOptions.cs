using System.Globalization;
using DaemonEye.Protocol;
using Microsoft.Extensions.Configuration;

namespace DaemonEye.Configuration;

/// <summary>The <c>broker</c> section: the embedded event bus and its socket.</summary>
public sealed class BrokerOptions
{
    public const string SectionName = "broker";

    /// <summary>Bus socket path; empty means the default location (see <see cref="Hosting.SocketPaths"/>).</summary>
    [ConfigurationKeyName("socket_path")]
    public string? SocketPath { get; set; }

    /// <summary>How long start-up may take before the agent gives up, in seconds.</summary>
    [ConfigurationKeyName("startup_timeout_seconds")]
    public int StartupTimeoutSeconds { get; set; } = 30;

    /// <summary>Most subscriptions the broker holds at once, over all connections.</summary>
    [ConfigurationKeyName("max_subscribers")]
    public int MaxSubscribers { get; set; } = 100;

    /// <summary>Per-connection outbound buffer, in messages. Beyond it messages for that connection are dropped and reported.</summary>
    [ConfigurationKeyName("message_buffer_size")]
    public int MessageBufferSize { get; set; } = 10_000;

    /// <summary>Serve the metrics in Prometheus text format on 127.0.0.1:<see cref="MetricsPort"/> (daemoneye-cli metrics works either way).</summary>
    [ConfigurationKeyName("enable_metrics")]
    public bool EnableMetrics { get; set; } = true;

    /// <summary>The Prometheus endpoint's port on 127.0.0.1; 0 picks a free port at start-up (logged).</summary>
    [ConfigurationKeyName("metrics_port")]
    public int MetricsPort { get; set; }

    /// <summary>Largest frame accepted, in bytes.</summary>
    [ConfigurationKeyName("max_frame_size")]
    public int MaxFrameSize { get; set; } = Framing.DefaultMaxFrameSize;

    /// <summary>Most bus connections open at once; one more is refused with LIMIT_EXCEEDED.</summary>
    [ConfigurationKeyName("max_connections")]
    public int MaxConnections { get; set; } = 256;

    /// <summary>
    /// Connections beyond <see cref="MaxConnections"/> that only the collectors this agent started
    /// (recognised by the pid the kernel reports for the socket) may use, so that a flood of other
    /// connections cannot lock a restarting collector out. 0: none reserved.
    /// </summary>
    [ConfigurationKeyName("reserved_collector_connections")]
    public int ReservedCollectorConnections { get; set; } = 16;

    /// <summary>How long a new connection has to complete its Hello, in seconds; then it is closed.</summary>
    [ConfigurationKeyName("handshake_timeout_seconds")]
    public double HandshakeTimeoutSeconds { get; set; } = 10;

    /// <summary>How long a frame may take from its first byte to its last, in seconds; then the connection is closed.</summary>
    [ConfigurationKeyName("frame_timeout_seconds")]
    public double FrameTimeoutSeconds { get; set; } = 30;

    /// <summary>
    /// How long a connection that holds no subscription may send nothing, in seconds; then it is
    /// closed. A subscriber is never idle (it legitimately only listens); any frame, a Ping for one,
    /// keeps a connection alive. 0: off.
    /// </summary>
    [ConfigurationKeyName("idle_timeout_seconds")]
    public double IdleTimeoutSeconds { get; set; } = 300;

    /// <summary>Most subscriptions one connection may hold.</summary>
    [ConfigurationKeyName("max_subscriptions_per_connection")]
    public int MaxSubscriptionsPerConnection { get; set; } = 100;

    /// <summary>Most subscriptions, over all connections, on one topic or pattern (the same pattern string).</summary>
    [ConfigurationKeyName("max_subscribers_per_topic")]
    public int MaxSubscribersPerTopic { get; set; } = 100;

    /// <summary>
    /// Bytes that may wait for one connection's writer (queued deliveries, acks, errors, replies).
    /// Deliveries past it are dropped and counted like those past message_buffer_size; a connection
    /// whose replies would pass it is not reading, and is cut off.
    /// </summary>
    [ConfigurationKeyName("max_outbound_bytes")]
    public long MaxOutboundBytes { get; set; } = 64L * 1024 * 1024;

    /// <summary>Most live topics in the agent (a topic is live from its first publish until it idles out).</summary>
    [ConfigurationKeyName("max_topics")]
    public int MaxTopics { get; set; } = 10_000;

    /// <summary>Most topics one connection may have in use at once.</summary>
    [ConfigurationKeyName("max_topics_per_connection")]
    public int MaxTopicsPerConnection { get; set; } = 1_000;

    /// <summary>
    /// How many of a connection's latest publish correlation ids the agent remembers to refuse a
    /// repeat (the product document: "Correlation IDs validated for uniqueness"); 0 turns the check off.
    /// </summary>
    [ConfigurationKeyName("correlation_window")]
    public int CorrelationWindow { get; set; } = 4096;

    /// <summary>A topic nobody has published on for this long releases its state (its sequence is remembered).</summary>
    [ConfigurationKeyName("topic_idle_seconds")]
    public int TopicIdleSeconds { get; set; } = 60;

    /// <summary>
    /// After its last event, how long the bus socket thread keeps polling (yielding the CPU between
    /// polls) before it sleeps, in microseconds; 0 turns busy polling off (see <see cref="Networking.SocketReactor.BusyPoll"/>).
    /// </summary>
    [ConfigurationKeyName("busy_poll_microseconds")]
    public int BusyPollMicroseconds { get; set; } = 200;

    public TimeSpan HandshakeTimeout => TimeSpan.FromSeconds(HandshakeTimeoutSeconds);

    public TimeSpan FrameTimeout => TimeSpan.FromSeconds(FrameTimeoutSeconds);

    /// <summary>The idle timeout; <see cref="TimeSpan.Zero"/> when off.</summary>
    public TimeSpan IdleTimeout => TimeSpan.FromSeconds(IdleTimeoutSeconds);

    /// <summary>Every problem with these values, each naming the key, the value and what is allowed.</summary>
    public IEnumerable<string> Validate()
    {
        if (StartupTimeoutSeconds is < 1 or > 3600)
        {
            yield return $"broker.startup_timeout_seconds is {StartupTimeoutSeconds}; allowed: 1 to 3600";
        }

        if (MaxSubscribers is < 1 or > 1_000_000)
        {
            yield return $"broker.max_subscribers is {MaxSubscribers}; allowed: 1 to 1000000";
        }

        if (MessageBufferSize is < 1 or > 10_000_000)
        {
            yield return $"broker.message_buffer_size is {MessageBufferSize}; allowed: 1 to 10000000";
        }

        if (MaxFrameSize is < 1024 or > Framing.MaxConfigurableFrameSize)
        {
            yield return $"broker.max_frame_size is {MaxFrameSize}; allowed: 1024 to {Framing.MaxConfigurableFrameSize}";
        }

        if (MaxConnections is < 1 or > 100_000)
        {
            yield return $"broker.max_connections is {MaxConnections}; allowed: 1 to 100000";
        }

        if (ReservedCollectorConnections is < 0 or > 10_000)
        {
            yield return $"broker.reserved_collector_connections is {ReservedCollectorConnections}; allowed: 0 to 10000";
        }

        foreach (var (key, value, min, max) in new[]
        {
            ("handshake_timeout_seconds", HandshakeTimeoutSeconds, 0.01, 3600.0),
            ("frame_timeout_seconds", FrameTimeoutSeconds, 0.01, 3600.0),
        })
        {
            if (double.IsNaN(value) || value < min || value > max)
            {
                yield return string.Create(CultureInfo.InvariantCulture, $"broker.{key} is {value}; allowed: {min} to {max} seconds");
            }
        }

        if (double.IsNaN(IdleTimeoutSeconds) || IdleTimeoutSeconds < 0 || (IdleTimeoutSeconds > 0 && IdleTimeoutSeconds < 0.01) || IdleTimeoutSeconds > 86400)
        {
            yield return string.Create(CultureInfo.InvariantCulture, $"broker.idle_timeout_seconds is {IdleTimeoutSeconds}; allowed: 0 (off) or 0.01 to 86400 seconds");
        }

        if (MaxSubscriptionsPerConnection is < 1 or > 1_000_000)
        {
            yield return $"broker.max_subscriptions_per_connection is {MaxSubscriptionsPerConnection}; allowed: 1 to 1000000";
        }

        if (MaxSubscribersPerTopic is < 1 or > 1_000_000)
        {
            yield return $"broker.max_subscribers_per_topic is {MaxSubscribersPerTopic}; allowed: 1 to 1000000";
        }

        if (MaxOutboundBytes < 4L * MaxFrameSize || MaxOutboundBytes > 16L * 1024 * 1024 * 1024)
        {
            yield return $"broker.max_outbound_bytes is {MaxOutboundBytes}; allowed: 4 x broker.max_frame_size ({4L * MaxFrameSize}) to 17179869184 (16 GiB)";
        }

        if (MaxTopics is < 1 or > 1_000_000)
        {
            yield return $"broker.max_topics is {MaxTopics}; allowed: 1 to 1000000";
        }

        if (MaxTopicsPerConnection < 1 || MaxTopicsPerConnection > MaxTopics)
        {
            yield return $"broker.max_topics_per_connection is {MaxTopicsPerConnection}; allowed: 1 to broker.max_topics ({MaxTopics})";
        }

        if (CorrelationWindow is < 0 or > 1_000_000)
        {
            yield return $"broker.correlation_window is {CorrelationWindow}; allowed: 0 (no uniqueness check) to 1000000";
        }

        if (TopicIdleSeconds is < 1 or > 86_400)
        {
            yield return $"broker.topic_idle_seconds is {TopicIdleSeconds}; allowed: 1 to 86400";
        }

        if (!Networking.SocketReactor.IsValidBusyPoll(TimeSpan.FromMicroseconds(BusyPollMicroseconds)))
        {
            yield return $"broker.busy_poll_microseconds is {BusyPollMicroseconds}; allowed: 0 (off) to {Networking.SocketReactor.MaxBusyPoll.TotalMicroseconds}";
        }

        if (MetricsPort is < 0 or > 65535)
        {
            yield return $"broker.metrics_port is {MetricsPort}; allowed: 0 (pick a free port) or 1 to 65535";
        }

        if (SocketPath is { Length: > 0 } path)
        {
            if (System.Text.Encoding.UTF8.GetByteCount(Path.GetFullPath(path)) > 107)
            {
                yield return $"broker.socket_path is '{path}'; a Unix socket path must be at most 107 bytes";
            }
        }
    }
}
