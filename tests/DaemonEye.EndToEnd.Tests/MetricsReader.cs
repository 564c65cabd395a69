using System.Text.Json;
using DaemonEye.Protocol.Ipc.V1;

namespace DaemonEye.EndToEnd.Tests;

/// <summary>
/// The agent's metrics as tests read them: <c>daemoneye-cli metrics --json</c> output, or the IPC
/// MetricsResponse itself (no CLI process) when a test only needs a number between two steps.
/// </summary>
internal static class MetricsReader
{
    /// <summary>The one point of <paramref name="name"/> whose tags are exactly <paramref name="tags"/>, from <c>metrics --json</c>.</summary>
    public static JsonElement Point(JsonElement root, string name, params (string Key, string Value)[] tags)
    {
        var metric = root.GetProperty("metrics").EnumerateArray().SingleOrDefault(m => m.GetProperty("name").GetString() == name);
        Assert.True(metric.ValueKind == JsonValueKind.Object, $"no metric {name}");
        var points = metric.GetProperty("points").EnumerateArray().Where(p =>
        {
            var t = p.GetProperty("tags");
            return t.EnumerateObject().Count() == tags.Length && tags.All(tag => t.TryGetProperty(tag.Key, out var v) && v.GetString() == tag.Value);
        }).ToList();
        Assert.True(points.Count == 1, $"{name}{{{string.Join(",", tags.Select(t => $"{t.Key}={t.Value}"))}}}: {points.Count} points in {metric}");
        return points[0];
    }

    public static double Value(JsonElement root, string name, params (string Key, string Value)[] tags) =>
        Point(root, name, tags).GetProperty("value").GetDouble();

    /// <summary>The agent's metrics over IPC.</summary>
    public static async Task<MetricsResponse> SnapshotAsync(AgentProcess agent) =>
        (await IpcProbe.SendAsync(agent.IpcSocketPath, new IpcRequest { Metrics = new MetricsRequest() })).Metrics;

    /// <summary>The value of the point with exactly these tags, or 0 when the instrument has recorded none yet.</summary>
    public static double ValueOrZero(MetricsResponse metrics, string name, params (string Key, string Value)[] tags)
    {
        var metric = metrics.Metrics.SingleOrDefault(m => m.Name == name);
        Assert.True(metric is not null, $"no metric {name}");
        var points = metric.Points.Where(p => p.Tags.Count == tags.Length && tags.All(t => p.Tags.TryGetValue(t.Key, out var v) && v == t.Value)).ToList();
        Assert.True(points.Count <= 1, $"{name}: {points.Count} points with tags {string.Join(",", tags)}");
        return points.Count == 0 ? 0 : points[0].Value;
    }
}
