using DaemonEye.Gateway.Security;
using ErrorCode = DaemonEye.Protocol.V1.ErrorCode;

namespace DaemonEye.Gateway;

/// <summary>Publishing: each accepted Publish frame is checked, grouped by topic and routed once per read.</summary>
internal sealed partial class BusConnection
{
    private void Accept(ReadOnlySpan<byte> topicUtf8, ReadOnlySpan<byte> publish, uint requestId)
    {
        var entry = _publishes.Resolve(topicUtf8, out var error);
        if (entry is null)
        {
            _stats.AddProtocolError();
            TryEnqueueError(requestId, ErrorCode.InvalidTopic, $"publish refused: {error}");
            return;
        }

        if (!_policy.PublishesAnything && _policy.CheckPublish(entry) is { } rule)
        {
            Deny(rule, requestId, $"publish to '{entry.Topic}'");
            return;
        }

        if (PublishCorrelation.FindInvalidField(publish) is var bad and not 0)
        {
            RefuseCorrelation(requestId, $"publish to '{entry.Topic}' refused: {PublishCorrelation.FieldName(bad)} is not a valid correlation id");
            return;
        }

        _publishes.Add(entry, publish);
        // Only collectors have a heartbeat topic; the entry is cached so the check is a reference compare.
        if (_heartbeatTopic is not null && (ReferenceEquals(entry, _heartbeatEntry) || entry.Topic == _heartbeatTopic))
        {
            _heartbeatEntry = entry;
            // A collector's heartbeat on its own topic: the supervisor hears it without subscribing.
            _rpc.NotifyHeartbeat(_clientId);
        }
    }

    private async Task FlushPublishesAsync()
    {
        if (_publishes.IsEmpty)
        {
            return;
        }

        SendCorked(); // nothing corked waits behind the grain calls

        var pending = _publishes.PendingMessages;
        try
        {
            await _publishes.FlushAsync(Id);
            _stats.AddPublished(pending);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            _stats.AddUnrouted(pending);
            LogRoutingFailed(_logger, Id, pending, ex);
            TryEnqueueError(0, ErrorCode.Internal, $"{pending} published messages could not be routed: {ex.Message}");
        }
    }
}
