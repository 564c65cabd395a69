using DaemonEye.Configuration;
using DaemonEye.Gateway;
using DaemonEye.Gateway.Security;
using DaemonEye.Hosting;
using DaemonEye.Protocol.Ipc.V1;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DaemonEye.Server.Tests;

/// <summary>
/// Who may do what over the IPC socket: every operation is classified read or operate, and a caller's
/// role comes from its peer credentials (the agent's user and root operate; other admitted uids read).
/// </summary>
public sealed class IpcAuthorizationTests
{
    private const uint Nobody = 65534;
    private readonly GatewayStatistics _stats = new();
    private readonly CapturingLogger _log = new();

    private AccessControl Access(params string[] allowedUids) =>
        new(Options.Create(new SecurityOptions { AllowedUids = [.. allowedUids] }), new SpawnedCollectors(), _stats, _log);

    private static IpcRequest Command(CollectorAction action, string id = "procmond") => new() { CollectorCommand = new CollectorCommand { Id = id, Action = action } };

    /// <summary>Fails when an IpcRequest body or a CollectorAction is added without a classification in IpcOperations.</summary>
    [Fact]
    public void Every_ipc_request_body_and_collector_action_is_classified_and_named()
    {
        var unclassified = new List<string>();
        foreach (var body in Enum.GetValues<IpcRequest.BodyOneofCase>())
        {
            if (body == IpcRequest.BodyOneofCase.CollectorCommand)
            {
                unclassified.AddRange(Enum.GetValues<CollectorAction>().Where(a => IpcOperations.Classify(body, a) is null).Select(a => $"{body}.{a}"));
                Assert.All(Enum.GetValues<CollectorAction>(), a => Assert.DoesNotMatch("^collectors action ", IpcOperations.Name(Command(a))));
            }
            else if (IpcOperations.Classify(body) is null)
            {
                unclassified.Add(body.ToString());
            }
        }

        Assert.True(unclassified.Count == 0, $"classify these in IpcOperations.Classify (read or operate) and name them in IpcOperations.Name: {string.Join(", ", unclassified)}");

        // The oneof's fields are the enum's cases: nothing on the wire escapes the table.
        var fields = IpcRequest.Descriptor.Oneofs.Single(o => o.Name == "body").Fields;
        Assert.Equal(fields.Count + 1, Enum.GetValues<IpcRequest.BodyOneofCase>().Length);
        Assert.All(fields, f => Assert.DoesNotMatch("^IPC request ", IpcOperations.Name(Body(f.FieldNumber))));
    }

    /// <summary>A request whose body is the oneof field <paramref name="number"/>, set to its empty message.</summary>
    private static IpcRequest Body(int number)
    {
        var field = IpcRequest.Descriptor.FindFieldByNumber(number);
        var request = new IpcRequest();
        field.Accessor.SetValue(request, field.MessageType.Parser.ParseFrom(Array.Empty<byte>()));
        return request;
    }

    public static TheoryData<string, IpcRequest, IpcAccess> Operations => new()
    {
        { "status", new IpcRequest { Status = new StatusRequest() }, IpcAccess.Read },
        { "collectors list", new IpcRequest { ListCollectors = new ListCollectorsRequest() }, IpcAccess.Read },
        { "metrics", new IpcRequest { Metrics = new MetricsRequest() }, IpcAccess.Read },
        { "health", new IpcRequest { Health = new HealthRequest() }, IpcAccess.Read },
        { "rules list", new IpcRequest { RulesList = new RulesListRequest() }, IpcAccess.Read },
        { "collectors health", Command(CollectorAction.Health), IpcAccess.Read },
        { "an empty request", new IpcRequest(), IpcAccess.Read },
        { "collectors start", Command(CollectorAction.Start), IpcAccess.Operate },
        { "collectors stop", Command(CollectorAction.Stop), IpcAccess.Operate },
        { "collectors restart", Command(CollectorAction.Restart), IpcAccess.Operate },
        { "collectors (no action)", Command(CollectorAction.Unspecified), IpcAccess.Operate },
        { "task run", new IpcRequest { TaskRun = new TaskRunRequest { TaskType = "process.snapshot" } }, IpcAccess.Operate },
        { "rules test", new IpcRequest { RulesTest = new RulesTestRequest { FileName = "r.yaml", Content = "x" } }, IpcAccess.Operate },
        { "rules run", new IpcRequest { RulesRun = new RulesRunRequest() }, IpcAccess.Operate },
        { "subscribe --last", new IpcRequest { Retained = new RetainedRequest { Pattern = "events.alert.#", Count = 5 } }, IpcAccess.Operate },
        // A newer client's action this agent does not know: operate (fail closed).
        { "collectors action 42", Command((CollectorAction)42), IpcAccess.Operate },
    };

    [Theory]
    [MemberData(nameof(Operations))]
    public void Each_operation_needs_the_access_the_cli_command_implies(string name, IpcRequest request, IpcAccess access)
    {
        Assert.Equal(name, IpcOperations.Name(request));
        Assert.Equal(access, IpcOperations.Required(request));
    }

    [Fact]
    public void Root_and_the_agents_own_uid_are_operators_and_an_allowed_uid_is_a_reader()
    {
        var access = Access(Nobody.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(IpcRole.Operator, access.IpcCallerFor(new PeerCredentials(10, 0, 0), 1).Role);
        Assert.Equal(IpcRole.Operator, access.IpcCallerFor(new PeerCredentials(11, Posix.EffectiveUserId, 0), 2).Role);
        Assert.Equal(IpcRole.Reader, access.IpcCallerFor(new PeerCredentials(12, Nobody, Nobody), 3).Role);
        // No credentials from the kernel: never an operator.
        Assert.Equal(IpcRole.Reader, access.IpcCallerFor(null, 4).Role);
    }

    [Theory]
    [MemberData(nameof(Operations))]
    public void An_operator_may_do_everything(string name, IpcRequest request, IpcAccess access)
    {
        _ = (name, access);
        var control = Access();
        var root = control.IpcCallerFor(new PeerCredentials(10, 0, 0), 1);
        Assert.Null(control.AuthorizeIpc(root, request));
        Assert.Equal(0, _stats.DeniedBy(AccessRule.IpcOperate));
    }

    [Fact]
    public void A_reader_reads_and_is_refused_operations_with_a_message_naming_them_counted_and_logged_once_as_a_warning()
    {
        var access = Access(Nobody.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var reader = access.IpcCallerFor(new PeerCredentials(4242, Nobody, Nobody), 7);
        foreach (var read in Operations.Where(row => (IpcAccess)row[2] == IpcAccess.Read))
        {
            Assert.Null(access.AuthorizeIpc(reader, (IpcRequest)read[1]));
        }

        Assert.Equal(0, _stats.DeniedBy(AccessRule.IpcOperate));

        var refusal = access.AuthorizeIpc(reader, Command(CollectorAction.Stop));
        Assert.NotNull(refusal);
        Assert.StartsWith("collectors stop 'procmond' refused by rule ipc.operate: uid 65534 (pid 4242) has the IPC role reader", refusal);
        Assert.Contains($"needs the operator role, which only the agent's user (uid {Posix.EffectiveUserId}) and root have", refusal);
        Assert.Equal(1, _stats.DeniedBy(AccessRule.IpcOperate));

        Assert.StartsWith("task run refused by rule ipc.operate", access.AuthorizeIpc(reader, new IpcRequest { TaskRun = new TaskRunRequest() }));
        Assert.Equal(2, _stats.DeniedBy(AccessRule.IpcOperate));

        // First refusal on the connection: a warning naming operation, pid, uid and roles; the next: debug.
        Assert.Equal(
            [
                (LogLevel.Warning, 2305, "IPC connection 7: collectors stop refused by rule ipc.operate to pid 4242 uid 65534: its IPC role is Reader, the operation needs Operator"),
                (LogLevel.Debug, 2306, "IPC connection 7: task run refused again by rule ipc.operate to pid 4242 uid 65534"),
            ],
            _log.Entries);
    }

    private sealed class CapturingLogger : ILogger<AccessControl>
    {
        public List<(LogLevel Level, int EventId, string Message)> Entries { get; } = [];

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Entries.Add((logLevel, eventId.Id, formatter(state, exception)));
    }
}
