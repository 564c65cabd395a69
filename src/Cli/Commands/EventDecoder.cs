using DaemonEye.Client;
using DaemonEye.Cli.Output;
using DaemonEye.Protocol.Filesystem.V1;
using DaemonEye.Protocol.Network.V1;
using DaemonEye.Protocol.Process.V1;
using Google.Protobuf;
using Google.Protobuf.Reflection;

namespace DaemonEye.Cli.Commands;

/// <summary>
/// Decodes protobuf event payloads the CLI knows (content type
/// <c>application/x-protobuf; messageType=&lt;full name&gt;</c>) for <c>subscribe</c>: procmond's
/// events.process.*, netmond's events.network.* and fsmond's events.filesystem.* messages, and the
/// agent's own: alerts, collector lifecycle and configuration, task events, collector status.
/// Unknown types stay raw.
/// </summary>
internal static class EventDecoder
{
    private const string Prefix = "application/x-protobuf; messageType=";

    private static readonly TypeRegistry Registry = TypeRegistry.FromFiles(
        ProcessReflection.Descriptor, NetworkReflection.Descriptor, FilesystemReflection.Descriptor,
        Protocol.Alert.V1.AlertReflection.Descriptor, Protocol.Collector.V1.CollectorReflection.Descriptor, Protocol.Task.V1.TaskReflection.Descriptor, Protocol.Ipc.V1.IpcReflection.Descriptor);

    /// <summary>The decoded message, or null when the content type names no known type or the bytes do not parse.</summary>
    public static IMessage? TryDecode(BusMessage message)
    {
        var contentType = message.ContentType;
        if (!contentType.StartsWith(Prefix, StringComparison.Ordinal) || Registry.Find(contentType[Prefix.Length..].Trim()) is not { } descriptor)
        {
            return null;
        }

        try
        {
            return descriptor.Parser.ParseFrom(message.Payload.Span);
        }
        catch (InvalidProtocolBufferException)
        {
            return null;
        }
    }

    /// <summary>The message as one JSON object with the .proto field names, 64-bit integers as numbers (<see cref="ProtoJson"/>).</summary>
    public static string ToJson(IMessage message) => ProtoJson.Format(message);
}
