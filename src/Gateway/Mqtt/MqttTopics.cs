using DaemonEye.Topics;

namespace DaemonEye.Gateway.Mqtt;

/// <summary>
/// MQTT topic names and filters to bus topics and patterns and back: <c>/</c> ↔ <c>.</c>, with
/// <c>+</c> and <c>#</c> as they are. A level that holds a <c>.</c> has no bus equivalent (it would
/// become two levels) and is refused, so the mapping is one to one; everything else is checked by
/// <see cref="TopicRules"/>, the bus's own rules.
/// </summary>
internal static class MqttTopics
{
    /// <summary>The bus topic for MQTT topic name <paramref name="mqtt"/>, or null with the reason it has none.</summary>
    public static string? ToBusTopic(string? mqtt, out string? error) => Map(mqtt, isFilter: false, out error);

    /// <summary>The bus pattern for MQTT topic filter <paramref name="mqtt"/>, or null with the reason it has none.</summary>
    public static string? ToBusPattern(string? mqtt, out string? error) => Map(mqtt, isFilter: true, out error);

    /// <summary>The MQTT topic name (or filter) of a bus topic (or pattern).</summary>
    public static string ToMqtt(string bus) => bus.Replace(TopicRules.Separator, '/');

    private static string? Map(string? mqtt, bool isFilter, out string? error)
    {
        var what = isFilter ? "topic filter" : "topic";
        if (string.IsNullOrEmpty(mqtt))
        {
            error = $"the MQTT {what} is empty";
            return null;
        }

        if (mqtt[0] == '$')
        {
            error = $"MQTT {what} '{mqtt}' starts with '$': system topics and shared subscriptions ($share/...) are not served; bus topics map '/' to '.'";
            return null;
        }

        if (mqtt.Contains(TopicRules.Separator, StringComparison.Ordinal))
        {
            error = $"MQTT {what} '{mqtt}' has a '.' in a level; bus topics use '.' as their separator, so MQTT levels map one to one and may not contain it (write events/process/start for events.process.start)";
            return null;
        }

        var bus = mqtt.Replace('/', TopicRules.Separator);
        var validation = isFilter ? TopicRules.ValidatePattern(bus) : TopicRules.ValidateTopic(bus);
        if (!validation.IsValid)
        {
            error = $"MQTT {what} '{mqtt}' is bus {(isFilter ? "pattern" : "topic")} '{bus}', which the bus refuses: {validation.Error}";
            return null;
        }

        error = null;
        return bus;
    }
}
