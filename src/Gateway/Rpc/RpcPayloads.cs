using DaemonEye.Protocol.Collector.V1;
using DaemonEye.Protocol.V1;
using TaskRequest = DaemonEye.Protocol.Task.V1.TaskRequest;
using Google.Protobuf;
using Google.Protobuf.Reflection;

namespace DaemonEye.Gateway.Rpc;

/// <summary>
/// The request payloads whose schema the agent knows (bus.proto, <c>RpcOperation</c>), checked by the router
/// before it forwards or serves a call: Stop takes an empty payload or a <c>StopRequest</c>; UpdateConfig an
/// <c>UpdateConfigRequest</c>; ExecuteTask a <c>TaskRequest</c> with a task id and a type; Start, Restart,
/// HealthCheck, GetCapabilities and Diagnostics take none. A payload that does not parse, carries a field
/// its message does not have (or a known field with the wrong wire type: another message sent in its place),
/// or breaks a rule below is refused at once with a message naming what was wrong and what is allowed.
/// What a value means (a task type, a setting's range) is the collector's to check.
/// </summary>
internal static class RpcPayloads
{
    public const int MaxTaskIdLength = 256;
    public const int MaxKeyLength = 128;

    /// <summary>Null when <paramref name="payload"/> is acceptable for <paramref name="operation"/>, else what is wrong.</summary>
    public static string? Problem(RpcOperation operation, ByteString payload) => operation switch
    {
        RpcOperation.Stop => payload.IsEmpty ? null : Parse(operation, payload, StopRequest.Parser, StopRequest.Descriptor, _ => null),
        RpcOperation.UpdateConfig => Parse(operation, payload, UpdateConfigRequest.Parser, UpdateConfigRequest.Descriptor, CheckSettings),
        RpcOperation.ExecuteTask => Parse(operation, payload, TaskRequest.Parser, TaskRequest.Descriptor, CheckTask),
        _ when payload.IsEmpty => null,
        _ => $"{operation} takes no payload; got {payload.Length} bytes (payloads: Stop a daemoneye.collector.v1.StopRequest or none, "
             + "UpdateConfig a daemoneye.collector.v1.UpdateConfigRequest, ExecuteTask a daemoneye.task.v1.TaskRequest)",
    };

    private static string? Parse<T>(RpcOperation operation, ByteString payload, MessageParser<T> parser, MessageDescriptor descriptor, Func<T, string?> check)
        where T : IMessage<T>
    {
        T message;
        try
        {
            message = parser.ParseFrom(payload);
        }
        catch (InvalidProtocolBufferException e)
        {
            return $"{operation} payload is not a {descriptor.FullName}: {e.Message.TrimEnd('.')}; allowed: {Fields(descriptor)}";
        }

        return Unknown(operation, payload, descriptor) ?? check(message);
    }

    /// <summary>The first field of the payload that <paramref name="descriptor"/> does not have, or has with another wire type.</summary>
    private static string? Unknown(RpcOperation operation, ByteString payload, MessageDescriptor descriptor)
    {
        var input = new CodedInputStream(payload.ToByteArray());
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            var number = WireFormat.GetTagFieldNumber(tag);
            var wire = WireFormat.GetTagWireType(tag);
            var field = descriptor.FindFieldByNumber(number);
            if (field is null)
            {
                return $"{operation} payload has field {number} ({Wire(wire)}), which {descriptor.FullName} does not have; allowed: {Fields(descriptor)}";
            }

            if (!Accepts(field, wire))
            {
                return $"{operation} payload has field {number} as {Wire(wire)}, but {descriptor.FullName}.{field.Name} is {Kind(field)}; allowed: {Fields(descriptor)}";
            }

            input.SkipLastField();
        }

        return null;
    }

    private static string? CheckTask(TaskRequest task)
    {
        if (task.TaskId.Length is 0 or > MaxTaskIdLength)
        {
            return $"ExecuteTask: TaskRequest.task_id has {task.TaskId.Length} characters; allowed: 1 to {MaxTaskIdLength}";
        }

        if (task.TaskType.Length is 0 or > MaxKeyLength)
        {
            return $"ExecuteTask: TaskRequest.task_type has {task.TaskType.Length} characters; allowed: 1 to {MaxKeyLength} (a type the collector declares, e.g. process.snapshot)";
        }

        return task.Parameters.Keys.FirstOrDefault(k => k.Length is 0 or > MaxKeyLength) is { } key
            ? $"ExecuteTask: TaskRequest.parameters has a key of {key.Length} characters; allowed: 1 to {MaxKeyLength}"
            : null;
    }

    private static string? CheckSettings(UpdateConfigRequest request) =>
        request.Settings.Keys.FirstOrDefault(k => k.Length is 0 or > MaxKeyLength) is { } key
            ? $"UpdateConfig: UpdateConfigRequest.settings has a key of {key.Length} characters; allowed: 1 to {MaxKeyLength} (no settings: read them)"
            : null;

    private static bool Accepts(FieldDescriptor field, WireFormat.WireType wire)
    {
        var scalar = field.FieldType switch
        {
            FieldType.String or FieldType.Bytes or FieldType.Message or FieldType.Group => WireFormat.WireType.LengthDelimited,
            FieldType.Double or FieldType.Fixed64 or FieldType.SFixed64 => WireFormat.WireType.Fixed64,
            FieldType.Float or FieldType.Fixed32 or FieldType.SFixed32 => WireFormat.WireType.Fixed32,
            _ => WireFormat.WireType.Varint,
        };
        return wire == scalar || (field.IsRepeated && wire == WireFormat.WireType.LengthDelimited);
    }

    private static string Fields(MessageDescriptor descriptor) =>
        descriptor.Fields.InFieldNumberOrder().Count == 0
            ? "no fields"
            : string.Join(", ", descriptor.Fields.InFieldNumberOrder().Select(f => $"{f.FieldNumber} {f.Name} ({Kind(f)})"));

    private static string Kind(FieldDescriptor field) =>
        field.IsMap ? "map" : (field.IsRepeated ? "repeated " : string.Empty) + field.FieldType.ToString().ToLowerInvariant();

    private static string Wire(WireFormat.WireType wire) => wire switch
    {
        WireFormat.WireType.Varint => "a varint",
        WireFormat.WireType.Fixed64 => "a 64-bit value",
        WireFormat.WireType.LengthDelimited => "length-delimited",
        WireFormat.WireType.Fixed32 => "a 32-bit value",
        _ => $"wire type {(int)wire}",
    };
}
