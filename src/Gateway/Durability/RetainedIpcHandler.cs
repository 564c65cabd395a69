using DaemonEye.Gateway.Ipc;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.V1;
using DaemonEye.Topics;
using Google.Protobuf;

namespace DaemonEye.Gateway.Durability;

/// <summary>
/// The IPC operation <c>retained</c> (21): the last messages the durable log holds on a pattern,
/// read without creating a durable consumer, for <c>subscribe --last N</c> and <c>alerts tail --last N</c>.
/// </summary>
internal sealed class RetainedIpcHandler(DurableLog? log) : IIpcRequestHandler
{
    /// <summary>Messages one request may ask for.</summary>
    public const int MaxCount = 10_000;

    /// <summary>Publish bytes one answer carries at most (well under the IPC frame limit).</summary>
    public const int MaxResponseBytes = 8 << 20;

    public IReadOnlyCollection<IpcRequest.BodyOneofCase> Handles { get; } = [IpcRequest.BodyOneofCase.Retained];

    public Task<IpcResponse> HandleAsync(IpcRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var pattern = request.Retained.Pattern;
        var count = request.Retained.Count;
        if (log is null)
        {
            return Task.FromResult(Refused($"nothing is retained for '{pattern}': durability.enabled is false on this agent"));
        }

        if (TopicRules.ValidatePattern(pattern) is { IsValid: false } invalid)
        {
            return Task.FromResult(Refused($"invalid pattern '{pattern}': {invalid.Error}"));
        }

        if (count is < 1 or > MaxCount)
        {
            return Task.FromResult(Refused($"count is {count}; allowed: 1 to {MaxCount}"));
        }

        if (!log.Patterns.Any(p => BusConnection.Overlaps(p, pattern)))
        {
            return Task.FromResult(Refused($"nothing is retained for '{pattern}': the agent keeps only the durable topics (durability.topics: {string.Join(", ", log.Patterns)})"));
        }

        // A read of SQLite on its own connection: off the IPC connection's thread.
        return Task.Run(() =>
        {
            var retained = log.Retained(pattern, (int)count);
            // The newest first until the answer would pass MaxResponseBytes; the older ones are counted.
            var from = retained.Count;
            long bytes = 0;
            while (from > 0 && bytes + retained[from - 1].Publish.Length + retained[from - 1].Topic.Length <= MaxResponseBytes)
            {
                from--;
                bytes += retained[from].Publish.Length + retained[from].Topic.Length;
            }

            var response = new RetainedResponse { Omitted = (uint)from };
            for (var i = from; i < retained.Count; i++)
            {
                response.Messages.Add(new RetainedMessage { Sequence = retained[i].Sequence, Topic = retained[i].Topic, Publish = ByteString.CopyFrom(retained[i].Publish.Span) });
            }

            return new IpcResponse { Retained = response };
        }, cancellationToken);
    }

    private static IpcResponse Refused(string message) =>
        new() { Error = new RpcError { Kind = RpcErrorKind.InvalidOperation, Message = message } };
}
