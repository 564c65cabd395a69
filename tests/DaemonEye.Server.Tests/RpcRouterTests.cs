using System.Collections.Concurrent;
using DaemonEye.Configuration;
using DaemonEye.Gateway.Rpc;
using DaemonEye.Protocol.V1;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace DaemonEye.Server.Tests;

/// <summary>The RPC router on a fake clock: deadlines, late answers, limits and disconnects, deterministically.</summary>
public sealed class RpcRouterTests : IDisposable
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 25, 12, 0, 0, TimeSpan.Zero));
    private readonly RpcRouter _router;
    private readonly Peer _caller = new(1, "cli");
    private readonly Peer _collector = new(2, "procmond");

    public RpcRouterTests()
    {
        _router = new RpcRouter(Options.Create(new RpcOptions { DefaultTimeoutSeconds = 30, MaxPendingRequests = 3 }), _time, new DaemonEye.Gateway.Collectors.CollectorDirectory(_time, TimeSpan.FromSeconds(5)), NullLogger<RpcRouter>.Instance);
        Assert.True(_router.TryRegisterCollector(_collector, new CollectorPresence("procmond", 2, 4242, 0, []), out _));
    }

    public void Dispose() => _router.Dispose();

    private static RpcRequest Request(string id, uint timeoutMs = 0, string target = "control.collector.procmond") => new()
    {
        Correlation = new CorrelationMetadata { CorrelationId = id, RootCorrelationId = id },
        Operation = RpcOperation.HealthCheck,
        Target = target,
        TimeoutMs = timeoutMs,
    };

    private static RpcResponse Answer(RpcRequest request) => new() { Correlation = request.Correlation, Status = RpcStatus.Ok };

    [Fact]
    public void A_request_goes_to_the_collector_alone_with_its_deadline_and_the_answer_to_the_caller_alone()
    {
        var bystander = new Peer(3, "other");
        _router.HandleRequest(_caller, Request("c1", timeoutMs: 2000));

        var forwarded = Assert.Single(_collector.Requests);
        Assert.Equal(UnixTimeNanos(_time.GetUtcNow().AddSeconds(2)), forwarded.DeadlineUnixNanos);
        _router.HandleResponse(_collector, Answer(forwarded));

        Assert.Equal(RpcStatus.Ok, Assert.Single(_caller.Responses).Status);
        Assert.Empty(bystander.Responses);
        Assert.Equal(0, _router.Pending);
    }

    [Fact]
    public void Without_a_timeout_the_default_applies_and_the_sweep_answers_Timeout_then_drops_the_late_answer()
    {
        _router.HandleRequest(_caller, Request("c2"));
        var forwarded = Assert.Single(_collector.Requests);
        Assert.Equal(30_000u, forwarded.TimeoutMs);

        _time.Advance(TimeSpan.FromSeconds(29.9));
        Assert.Empty(_caller.Responses);
        _time.Advance(TimeSpan.FromSeconds(0.2));

        var timedOut = Assert.Single(_caller.Responses);
        Assert.Equal(RpcErrorKind.Timeout, timedOut.Error.Kind);
        _router.HandleResponse(_collector, Answer(forwarded));
        Assert.Single(_caller.Responses);
        Assert.Equal(1, _router.Statistics.LateResponsesDiscarded);
        Assert.Equal(0, _router.Pending);
    }

    [Fact]
    public void Past_max_pending_requests_the_call_is_refused_at_once_with_ResourceExhausted()
    {
        for (var i = 0; i < 3; i++)
        {
            _router.HandleRequest(_caller, Request($"p{i}"));
        }

        _router.HandleRequest(_caller, Request("p3"));

        var refused = Assert.Single(_caller.Responses);
        Assert.Equal((RpcErrorKind.ResourceExhausted, "p3"), (refused.Error.Kind, refused.Correlation.CorrelationId));
        Assert.Equal(3, _collector.Requests.Count);
    }

    [Theory]
    [InlineData("control.collector.nobody", RpcErrorKind.NotFound, "procmond")]
    [InlineData("events.process.lifecycle", RpcErrorKind.InvalidOperation, "control.collector.<collector id>")]
    [InlineData("control.collector.a.b", RpcErrorKind.InvalidOperation, "control.collector.<collector id>")]
    public void A_bad_target_is_answered_with_what_is_known_or_allowed(string target, RpcErrorKind kind, string mentioned)
    {
        _router.HandleRequest(_caller, Request("t1", target: target));

        var answer = Assert.Single(_caller.Responses);
        Assert.Equal(kind, answer.Error.Kind);
        Assert.Contains(mentioned, answer.Error.Message);
        Assert.Empty(_collector.Requests);
    }

    [Fact]
    public void A_correlation_id_already_in_flight_is_refused()
    {
        _router.HandleRequest(_caller, Request("dup"));
        _router.HandleRequest(new Peer(9, "other-cli"), Request("dup"));

        Assert.Single(_collector.Requests);
        Assert.Equal(1, _router.Pending);
    }

    [Fact]
    public void When_the_collector_disconnects_its_pending_calls_fail_with_CommunicationError_and_it_is_unregistered()
    {
        _router.HandleRequest(_caller, Request("d1"));
        _router.HandleRequest(_caller, Request("d2"));

        _router.PeerClosed(_collector);

        Assert.All(_caller.Responses, r => Assert.Equal(RpcErrorKind.CommunicationError, r.Error.Kind));
        Assert.Equal(2, _caller.Responses.Count);
        Assert.Equal(0, _router.Pending);
        Assert.Empty(_router.CollectorIds);
    }

    [Fact]
    public void When_the_caller_disconnects_its_calls_are_forgotten_and_a_later_answer_is_discarded()
    {
        _router.HandleRequest(_caller, Request("g1"));
        _router.PeerClosed(_caller);
        Assert.Equal(0, _router.Pending);

        _router.HandleResponse(_collector, Answer(_collector.Requests[0]));

        Assert.Empty(_caller.Responses);
        Assert.Equal(1, _router.Statistics.LateResponsesDiscarded);
    }

    [Fact]
    public void An_answer_from_a_connection_that_was_not_asked_is_discarded()
    {
        var impostor = new Peer(7, "impostor");
        _router.HandleRequest(_caller, Request("i1"));

        _router.HandleResponse(impostor, Answer(_collector.Requests[0]));

        Assert.Empty(_caller.Responses);
        Assert.Equal(1, _router.Pending);
    }

    private static ulong UnixTimeNanos(DateTimeOffset t) => UnixTime.ToNanos(t);

    /// <summary>A connection as the router sees it: records what it is handed.</summary>
    [Fact]
    public void A_reload_changes_the_default_timeout_and_the_pending_bound_for_the_next_calls_and_a_malformed_payload_is_not_forwarded()
    {
        var options = new ReloadableOptions(new RpcOptions { DefaultTimeoutSeconds = 30, MaxPendingRequests = 1 });
        using var router = new RpcRouter(options, _time, new DaemonEye.Gateway.Collectors.CollectorDirectory(_time, TimeSpan.FromSeconds(5)), NullLogger<RpcRouter>.Instance);
        var collector = new Peer(12, "procmond");
        Assert.True(router.TryRegisterCollector(collector, new CollectorPresence("procmond", 12, 4242, 0, []), out _));

        router.HandleRequest(_caller, Request("r1"));
        router.HandleRequest(_caller, Request("r2"));
        Assert.Equal(30_000u, Assert.Single(collector.Requests).TimeoutMs);
        Assert.Equal(RpcErrorKind.ResourceExhausted, Assert.Single(_caller.Responses).Error.Kind);

        options.Set(new RpcOptions { DefaultTimeoutSeconds = 5, MaxPendingRequests = 2 });
        router.HandleRequest(_caller, Request("r3"));
        Assert.Equal(5_000u, collector.Requests[^1].TimeoutMs);
        Assert.Equal(2, router.Pending);

        // A HealthCheck takes no payload: answered at once, never forwarded, counted.
        var malformed = Request("r4");
        malformed.Payload = Google.Protobuf.ByteString.CopyFrom(0x08, 0x01);
        router.HandleRequest(_caller, malformed);
        Assert.Equal(2, collector.Requests.Count);
        Assert.Equal((RpcErrorKind.InvalidOperation, 1L), (_caller.Responses[^1].Error.Kind, router.InvalidPayloads));
        Assert.StartsWith("HealthCheck takes no payload; got 2 bytes", _caller.Responses[^1].Error.Message, StringComparison.Ordinal);
    }

    private sealed class ReloadableOptions(RpcOptions value) : IOptionsMonitor<RpcOptions>
    {
        public RpcOptions CurrentValue { get; private set; } = value;

        public void Set(RpcOptions next) => CurrentValue = next;

        public RpcOptions Get(string? name) => CurrentValue;

        public IDisposable? OnChange(Action<RpcOptions, string?> listener) => null;
    }

    private sealed class Peer(long id, string name) : IRpcPeer
    {
        private readonly ConcurrentQueue<RpcRequest> _requests = new();
        private readonly ConcurrentQueue<RpcResponse> _responses = new();

        public long Id => id;

        public string Name => name;

        public List<RpcRequest> Requests => [.. _requests];

        public List<RpcResponse> Responses => [.. _responses];

        public void DeliverRequest(RpcRequest request) => _requests.Enqueue(request);

        public void DeliverResponse(RpcResponse response) => _responses.Enqueue(response);
    }
}
