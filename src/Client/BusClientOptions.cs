using DaemonEye.Configuration;
using DaemonEye.Hosting;
using DaemonEye.Protocol;
using DaemonEye.Protocol.V1;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;

namespace DaemonEye.Client;

/// <summary>How a <see cref="BusClient"/> finds the agent, introduces itself and behaves under load.</summary>
public sealed class BusClientOptions
{
    /// <summary>The agent's bus socket. Null: resolved exactly as the agent resolves it, from
    /// <see cref="ConfigPath"/> (broker.socket_path, DAEMONEYE_BROKER__SOCKET_PATH) or the default location.</summary>
    public string? SocketPath { get; set; }

    /// <summary>The agent's configuration file, used only to find the socket when <see cref="SocketPath"/>
    /// is null. Null: the agent's default (config/daemoneye.yaml, optional).</summary>
    public string? ConfigPath { get; set; }

    /// <summary>Stable client identifier sent in Hello, 1-128 characters.</summary>
    public string ClientId { get; set; } = $"{SanitizedProcessName()}-{Environment.ProcessId}";

    public Role Role { get; set; } = Role.Client;

    /// <summary>Capabilities declared in Hello (e.g. "publish:events.process.#").</summary>
    public IList<string> Capabilities { get; } = [];

    /// <summary>Token a collector started outside the agent presents in Hello to prove its id (the
    /// agent's <c>security.registration_tokens.&lt;id&gt;</c>). Null: none. Not needed by collectors the
    /// agent starts (it knows their pids) nor by other roles.</summary>
    public string? RegistrationToken { get; set; }

    /// <summary>Software name and version sent in Hello, for the agent's logs.</summary>
    public string ClientVersion { get; set; } = $"daemoneye-client/{typeof(BusClientOptions).Assembly.GetName().Version?.ToString(3)}";

    /// <summary>Reconnect automatically when the connection is lost (after a successful first connect).</summary>
    public bool AutoReconnect { get; set; } = true;

    /// <summary>First reconnect delay; doubles per failed attempt up to <see cref="ReconnectMaxDelay"/>, with jitter.</summary>
    public TimeSpan ReconnectMinDelay { get; set; } = TimeSpan.FromMilliseconds(100);

    public TimeSpan ReconnectMaxDelay { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Most encoded bytes waiting to be written; beyond it PublishAsync waits (backpressure).</summary>
    public int MaxPendingBytes { get; set; } = 4 * 1024 * 1024;

    /// <summary>Messages each subscription holds locally before the client stops reading the socket
    /// (the agent then buffers and, past broker.message_buffer_size, drops and reports). A durable
    /// subscription asks the agent for at most this many unacknowledged messages (<c>Subscribe.max_in_flight</c>;
    /// the agent's durability.max_ack_pending when smaller), so its buffer never fills and an ack flush
    /// never waits behind deliveries the reader cannot take.</summary>
    public int SubscriptionBufferSize { get; set; } = 8192;

    /// <summary>Longest wait for the agent's Welcome, and for restoring subscriptions after a reconnect.</summary>
    public TimeSpan HandshakeTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Longest time DisposeAsync waits for buffered publishes to reach the agent.</summary>
    public TimeSpan DisposeTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Timeout of an RPC call that sets none. Null: the agent's <c>rpc.default_timeout_seconds</c>.</summary>
    public TimeSpan? DefaultRpcTimeout { get; set; }

    /// <summary>
    /// Complete <see cref="BusClient.CallAsync"/> calls on the client's reader thread: the code after an
    /// awaited call runs there, and calls it makes are sent together after the read. Saves a thread
    /// hand-off per call and batches sends, for callers that make many calls at once. Off by default:
    /// while that code runs the reader reads nothing, so it must be short and must never block
    /// (no <c>.Result</c> or <c>.Wait()</c>: waiting on another call there deadlocks the client).
    /// A call that fails without an answer resumes on the thread that failed it (the timer of a
    /// timeout, the reconnect loop of a lost connection): the same rule applies.
    /// </summary>
    public bool CompleteCallsOnReader { get; set; }

    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    public ILoggerFactory? LoggerFactory { get; set; }

    /// <summary>The socket path this client will connect to.</summary>
    public string ResolveSocketPath()
    {
        if (!string.IsNullOrWhiteSpace(SocketPath))
        {
            return SocketPaths.BusSocket(SocketPath);
        }

        var configuration = new ConfigurationBuilder().AddDaemonEyeConfiguration(ConfigPath).Build();
        return SocketPaths.BusSocket(configuration.GetBrokerOptions().SocketPath);
    }

    /// <summary>Every problem with these options, each naming the option, the value and what is allowed.</summary>
    public IEnumerable<string> Validate()
    {
        if (string.IsNullOrEmpty(ClientId) || ClientId.Length > ProtocolConstants.MaxClientIdLength)
        {
            yield return $"ClientId is '{ClientId}'; it must be 1 to {ProtocolConstants.MaxClientIdLength} characters";
        }

        if (RegistrationToken is { Length: > 256 })
        {
            yield return $"RegistrationToken is {RegistrationToken.Length} characters; at most 256";
        }

        if (ReconnectMinDelay <= TimeSpan.Zero)
        {
            yield return $"ReconnectMinDelay is {ReconnectMinDelay}; it must be positive";
        }

        if (ReconnectMaxDelay < ReconnectMinDelay)
        {
            yield return $"ReconnectMaxDelay is {ReconnectMaxDelay}; it must be at least ReconnectMinDelay ({ReconnectMinDelay})";
        }

        if (MaxPendingBytes < 4096)
        {
            yield return $"MaxPendingBytes is {MaxPendingBytes}; it must be at least 4096";
        }

        if (SubscriptionBufferSize < 1)
        {
            yield return $"SubscriptionBufferSize is {SubscriptionBufferSize}; it must be at least 1";
        }

        if (HandshakeTimeout <= TimeSpan.Zero)
        {
            yield return $"HandshakeTimeout is {HandshakeTimeout}; it must be positive";
        }

        if (DefaultRpcTimeout is { } rpcTimeout && (rpcTimeout <= TimeSpan.Zero || rpcTimeout.TotalMilliseconds > uint.MaxValue))
        {
            yield return $"DefaultRpcTimeout is {rpcTimeout}; it must be positive and at most 49 days";
        }

        if (DisposeTimeout < TimeSpan.Zero)
        {
            yield return $"DisposeTimeout is {DisposeTimeout}; it must not be negative";
        }
    }

    internal void EnsureValid()
    {
        var failures = Validate().ToList();
        if (failures.Count > 0)
        {
            throw new ArgumentException("invalid BusClientOptions: " + string.Join("; ", failures));
        }
    }

    private static string SanitizedProcessName()
    {
        var name = AppDomain.CurrentDomain.FriendlyName;
        return string.IsNullOrEmpty(name) ? "client" : name.Length > 64 ? name[..64] : name;
    }
}
