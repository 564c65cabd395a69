namespace DaemonEye.Gateway;

/// <summary>Where the bus gateway listens, resolved from configuration.</summary>
public sealed record BusEndpoint(string SocketPath);
