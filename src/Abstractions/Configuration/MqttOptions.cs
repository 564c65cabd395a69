using System.Globalization;
using Microsoft.Extensions.Configuration;

namespace DaemonEye.Configuration;

/// <summary>
/// The <c>mqtt</c> section: the MQTT 3.1.1/5.0 listener for standard clients (docs/protocol.md, "MQTT"). On by
/// default on a Unix socket beside the bus socket, which admits exactly the peers the bus socket does;
/// the 127.0.0.1 TCP listener is opt-in and needs configured users.
/// </summary>
public sealed class MqttOptions
{
    public const string SectionName = "mqtt";

    /// <summary>The roles a TCP user may be given.</summary>
    public static readonly IReadOnlyList<string> TcpRoles = ["subscriber", "client"];

    /// <summary>Shortest password accepted for a TCP user.</summary>
    public const int MinPasswordLength = 16;

    /// <summary>Off: no MQTT socket at all.</summary>
    [ConfigurationKeyName("enabled")]
    public bool Enabled { get; set; } = true;

    /// <summary>The Unix socket. Empty: <c>mqtt.sock</c> beside the bus socket.</summary>
    [ConfigurationKeyName("socket_path")]
    public string? SocketPath { get; set; }

    /// <summary>Also listen on 127.0.0.1:<see cref="TcpPort"/> (username/password from <see cref="Users"/>).</summary>
    [ConfigurationKeyName("tcp_enabled")]
    public bool TcpEnabled { get; set; }

    /// <summary>The TCP port on 127.0.0.1 (only with <see cref="TcpEnabled"/>; 0: any free port, logged).</summary>
    [ConfigurationKeyName("tcp_port")]
    public int TcpPort { get; set; } = 1883;

    /// <summary>TCP users: user name to password. Unix-socket clients are known by their peer credentials instead.</summary>
    [ConfigurationKeyName("users")]
    [Secret]
    public Dictionary<string, string> Users { get; set; } = new(StringComparer.Ordinal);

    /// <summary>The bus role of every TCP user: <c>subscriber</c> (read-only) or <c>client</c> (may also publish on events.#).</summary>
    [ConfigurationKeyName("tcp_role")]
    public string TcpRole { get; set; } = "subscriber";

    /// <summary>MQTT connections at once (Unix socket and TCP together).</summary>
    [ConfigurationKeyName("max_connections")]
    public int MaxConnections { get; set; } = 64;

    /// <summary>Messages waiting for one MQTT client; beyond it new messages for that client are dropped and counted.</summary>
    [ConfigurationKeyName("max_pending_messages")]
    public int MaxPendingMessages { get; set; } = 10_000;

    /// <summary>QoS 1 messages of one durable session sent and not yet acknowledged (PUBACK) at once.</summary>
    [ConfigurationKeyName("max_inflight")]
    public int MaxInflight { get; set; } = 1_000;

    /// <summary>The Unix socket path: the configured one, or mqtt.sock beside the bus socket.</summary>
    public string ResolvedSocketPath(string? busSocket) =>
        string.IsNullOrWhiteSpace(SocketPath)
            ? Path.Combine(Path.GetDirectoryName(Hosting.SocketPaths.BusSocket(busSocket))!, "mqtt.sock")
            : Path.GetFullPath(SocketPath);

    public bool TcpUsersClients => string.Equals(TcpRole, "client", StringComparison.OrdinalIgnoreCase);

    /// <summary>Every problem with these values, each naming the key, the value and what is allowed.</summary>
    public IEnumerable<string> Validate()
    {
        if (TcpPort is < 0 or > 65535)
        {
            yield return string.Create(CultureInfo.InvariantCulture, $"mqtt.tcp_port is {TcpPort}; allowed: 1 to 65535, or 0 for any free port");
        }

        if (TcpEnabled && Users.Count == 0)
        {
            yield return "mqtt.tcp_enabled is true but mqtt.users is empty; TCP clients authenticate with a configured user name and password: add mqtt.users.<name>: <password>, or set mqtt.tcp_enabled: false";
        }

        foreach (var (user, password) in Users)
        {
            if (user.Length is < 1 or > 64 || !user.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.'))
            {
                yield return $"mqtt.users has user name '{user}'; allowed: 1 to 64 characters of A-Z, a-z, 0-9, '_', '-', '.'";
            }

            if (password is null || password.Length < MinPasswordLength || password.Length > 256 || password.Any(c => c is < '!' or > '~'))
            {
                yield return $"mqtt.users.{user} is {(password is null ? "empty" : $"{password.Length} characters")}; a password is {MinPasswordLength} to 256 printable ASCII characters without spaces (e.g. from: openssl rand -hex 16)";
            }
        }

        if (!TcpRoles.Contains(TcpRole, StringComparer.OrdinalIgnoreCase))
        {
            yield return $"mqtt.tcp_role is '{TcpRole}'; allowed: {string.Join(", ", TcpRoles)}";
        }

        if (MaxConnections is < 1 or > 100_000)
        {
            yield return $"mqtt.max_connections is {MaxConnections}; allowed: 1 to 100000";
        }

        if (MaxPendingMessages is < 16 or > 10_000_000)
        {
            yield return $"mqtt.max_pending_messages is {MaxPendingMessages}; allowed: 16 to 10000000";
        }

        if (MaxInflight is < 1 or > 65_000 || (MaxPendingMessages is >= 16 and <= 10_000_000 && MaxInflight >= MaxPendingMessages))
        {
            yield return $"mqtt.max_inflight is {MaxInflight}; allowed: 1 to 65000 and below mqtt.max_pending_messages ({MaxPendingMessages}), so that a durable session's messages always fit its queue";
        }
    }
}
