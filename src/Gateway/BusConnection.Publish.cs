using DaemonEye.Gateway.Security;
using ErrorCode = DaemonEye.Protocol.V1.ErrorCode;

namespace DaemonEye.Gateway;

/// <summary>Publishing: each accepted Publish frame is checked, grouped by topic and routed once per read.</summary>
internal sealed partial class BusConnection
{
    private void Accept(ReadOnlySpan<byte> topicUtf8, ReadOnlySpan<byte> publish, uint requestId)
    {
        var entry = _publishes.Resolve(topicUtf8, out var error, out var limit);
        if (entry is null)
        {
            if (limit is { } refusedBy)
            {
                RefuseTopic(refusedBy, requestId, error!);
                return;
            }

            _stats.AddProtocolError();
            TryEnqueueError(requestId, ErrorCode.InvalidTopic, $"publish refused: {error}");
            return;
        }

        if (_publishes.AdmitTopic(entry) is { } full)
        {
            RefuseTopic(Limit.MaxTopics, requestId, full);
            return;
        }

        if (!_policy.PublishesAnything && _policy.CheckPublish(entry) is { } rule)
        {
            Deny(rule, requestId, $"publish to '{entry.Topic}'");
            return;
        }

        if (PublishCorrelation.FindInvalidField(publish, out var correlationId) is var bad and not 0)
        {
            RefuseCorrelation(requestId, $"publish to '{entry.Topic}' refused: {PublishCorrelation.FieldName(bad)} is not a valid correlation id");
            return;
        }

        if (!correlationId.IsEmpty && _recentIds is { } recent && !recent.TryAdd(correlationId))
        {
            // Valid ids are 1-128 printable ASCII characters: safe to quote.
            _stats.AddLimitRefusal(Limit.CorrelationWindow);
            TryEnqueueError(requestId, ErrorCode.InvalidMessage,
                $"publish to '{entry.Topic}' refused: correlation.correlation_id '{System.Text.Encoding.ASCII.GetString(correlationId)}' repeats one of this connection's last {recent.Capacity} publishes (broker.correlation_window); give each message its own id, or none");
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

    /// <summary>A publish refused by a topic limit: LIMIT_EXCEEDED, counted, logged within the connection's warning budget.</summary>
    private void RefuseTopic(Limit limit, uint requestId, string reason)
    {
        _stats.AddLimitRefusal(limit);
        if (MayWarn())
        {
            LogTopicRefused(_logger, Id, _clientId, Limits.Name(limit), _stats.RefusedBy(limit));
        }

        TryEnqueueError(requestId, ErrorCode.LimitExceeded, $"publish refused: {reason}");
    }

    /// <summary>Reports the batches the durable log refused in the last flush (STORAGE_UNAVAILABLE, counted); returns their messages.</summary>
    private int ReportDurableRefusals()
    {
        var refused = 0;
        foreach (var (topic, count, reason) in _publishes.Refused)
        {
            refused += count;
            _stats.AddLimitRefusal(Security.Limit.DurableLogUnavailable);
            TryEnqueueError(0, ErrorCode.StorageUnavailable, $"publish of {count} messages to '{topic}' refused: {reason}");
        }

        _publishes.Refused.Clear();
        return refused;
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
            _stats.AddPublished(pending - ReportDurableRefusals());
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            _stats.AddUnrouted(pending);
            LogRoutingFailed(_logger, Id, pending, ex);
            TryEnqueueError(0, ErrorCode.Internal, $"{pending} published messages could not be routed: {ex.Message}");
        }
    }
}
