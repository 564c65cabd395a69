using System.Globalization;
using System.Reflection;
using DaemonEye.Protocol.Collector.V1;
using DaemonEye.Protocol.V1;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace DaemonEye.Client;

/// <summary>Adds a collector's own entries to its Diagnostics answer (queue depths, counters, settings, versions).</summary>
public delegate void CollectorDiagnosticsSource(Diagnostics diagnostics, IServiceProvider services);

public sealed partial class CollectorBuilder
{
    /// <summary>
    /// Adds the collector's own entries to its answer to RPC_OPERATION_DIAGNOSTICS
    /// (<c>daemoneye-cli collectors diagnostics &lt;id&gt;</c>). Every collector answers without this:
    /// the SDK fills identity, versions, its own queues, counters and settings. <paramref name="source"/>
    /// runs on each call and adds to the maps; a key the SDK already filled keeps the SDK's value.
    /// </summary>
    public CollectorBuilder AddDiagnostics(CollectorDiagnosticsSource source)
    {
        ArgumentNullException.ThrowIfNull(source);
        Services.AddSingleton(new DiagnosticsSourceRegistration(source));
        return this;
    }
}

internal sealed record DiagnosticsSourceRegistration(CollectorDiagnosticsSource Source);

internal sealed partial class CollectorHost
{
    private static readonly string SdkVersion = VersionOf(typeof(CollectorHost).Assembly);

    /// <summary>
    /// The answer to Diagnostics: the SDK's entries, then the collector's own (<see cref="CollectorBuilder.AddDiagnostics"/>);
    /// the same message is published on <c>control.health.diagnostics.&lt;id&gt;</c> for whoever subscribes.
    /// </summary>
    private Diagnostics Diagnose(CollectorCall call)
    {
        var client = Client;
        var d = new Diagnostics
        {
            CollectorId = CollectorId,
            Pid = (uint)Environment.ProcessId,
            UptimeMs = (ulong)Uptime.TotalMilliseconds,
        };
        d.Versions.Add("collector", Assembly.GetEntryAssembly() is { } entry ? VersionOf(entry) : "unknown");
        d.Versions.Add("sdk", SdkVersion);
        d.Versions.Add("dotnet", Environment.Version.ToString());
        d.Versions.Add("protocol", ((int)ProtocolVersion._1).ToString(CultureInfo.InvariantCulture));

        var requests = client.RpcRequests;
        d.QueueDepths.Add("rpc_requests", requests.CanCount ? (ulong)requests.Count : 0);
        // This call is one of them.
        d.QueueDepths.Add("rpc_in_flight", (ulong)Math.Max(0, Volatile.Read(ref _inFlight)));
        d.QueueDepths.Add("rpc_calls_pending", (ulong)client.PendingCalls);

        d.Counters.Add("heartbeats_sent", Volatile.Read(ref _heartbeatSequence));
        d.Counters.Add("rpc_expired", (ulong)ExpiredRequests);
        d.Counters.Add("rpc_late_responses", (ulong)client.LateRpcResponses);
        d.Counters.Add("deliveries_dropped", (ulong)client.DroppedTotal);
        d.Counters.Add("frames_lost", (ulong)client.LostFrames);

        d.Settings.Add("heartbeat_interval_ms", ((long)_options.EffectiveHeartbeatInterval.TotalMilliseconds).ToString(CultureInfo.InvariantCulture));
        d.Settings.Add("send_heartbeats", _options.SendHeartbeats ? "true" : "false");
        d.Settings.Add("capacity", _options.Capacity.ToString(CultureInfo.InvariantCulture));
        d.Settings.Add("task_types", string.Join(',', _options.TaskTypes));
        d.Settings.Add("event_domains", string.Join(',', _options.EventDomains));
        d.Settings.Add("socket_path", client.SocketPath);
        d.Settings.Add("connection_id", client.ConnectionId ?? string.Empty);
        d.Settings.Add("supervised", _options.SupervisorPid is null ? "false" : "true");

        foreach (var registration in services.GetServices<DiagnosticsSourceRegistration>())
        {
            var own = new Diagnostics();
            registration.Source(own, call.Services);
            MergeOwn(d.Versions, own.Versions);
            MergeOwn(d.QueueDepths, own.QueueDepths);
            MergeOwn(d.Counters, own.Counters);
            MergeOwn(d.Settings, own.Settings);
        }

        _ = PublishDiagnosticsAsync(d);
        return d;
    }

    private static void MergeOwn<TValue>(Google.Protobuf.Collections.MapField<string, TValue> into, Google.Protobuf.Collections.MapField<string, TValue> own)
    {
        foreach (var (key, value) in own)
        {
            into.TryAdd(key, value);
        }
    }

    private async Task PublishDiagnosticsAsync(Diagnostics diagnostics)
    {
        try
        {
            await PublishAsync(DiagnosticsTopicPrefix + CollectorId, diagnostics, _stopping.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is BusException or ObjectDisposedException or OperationCanceledException or InvalidOperationException)
        {
            LogDiagnosticsNotPublished(logger, CollectorId, e.Message);
        }
    }

    private static string VersionOf(Assembly assembly) =>
        assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0]
        ?? assembly.GetName().Version?.ToString()
        ?? "unknown";

    [LoggerMessage(EventId = 109, Level = LogLevel.Debug, Message = "Collector {CollectorId}: diagnostics not published on control.health.diagnostics: {Reason}")]
    private static partial void LogDiagnosticsNotPublished(ILogger logger, string collectorId, string reason);
}
