using DaemonEye.Protocol.Ipc.V1;

namespace DaemonEye.Gateway.Security;

/// <summary>What an IPC caller may do, decided from its peer credentials (SO_PEERCRED) when it connects.</summary>
public enum IpcRole
{
    /// <summary>Every admitted peer that is not the agent's user or root: reads the agent's state.</summary>
    Reader,

    /// <summary>The agent's user and root: also starts, stops and restarts collectors and runs tasks and rules.</summary>
    Operator,
}

/// <summary>What an IPC request does to the agent.</summary>
public enum IpcAccess
{
    /// <summary>Reads state: changes nothing and sets no collector to work (a HealthCheck is a probe, not work).</summary>
    Read,

    /// <summary>Changes state (collectors started, stopped, restarted) or makes collectors do work (tasks, rules).</summary>
    Operate,
}

/// <summary>
/// Every IPC operation with the access it needs: the one table IPC authorization reads. An operation
/// missing from it (a new <c>IpcRequest</c> body or <c>CollectorAction</c> nobody classified) needs
/// <see cref="IpcAccess.Operate"/>, and <c>IpcOperationsTests</c> fails until it is classified.
/// </summary>
public static class IpcOperations
{
    /// <summary>What a reader may do, for the refusal message.</summary>
    public const string ReaderMay = "status, health, metrics, collectors list, collectors health, rules list";

    /// <summary>What needs an operator, for the refusal message.</summary>
    public const string OperatorOnly = "collectors start, stop and restart, task run, rules test, rules run, logs";

    /// <summary>The access <paramref name="request"/> needs; <see cref="IpcAccess.Operate"/> when it is not classified.</summary>
    public static IpcAccess Required(IpcRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        return Classify(request.BodyCase, request.CollectorCommand?.Action) ?? IpcAccess.Operate;
    }

    /// <summary>
    /// The access a request body (and, for <c>collector_command</c>, its action) needs, or null when
    /// the table does not classify it.
    /// </summary>
    public static IpcAccess? Classify(IpcRequest.BodyOneofCase body, CollectorAction? action = null) => body switch
    {
        // Answered with "the request has no body": nothing to guard.
        IpcRequest.BodyOneofCase.None => IpcAccess.Read,
        IpcRequest.BodyOneofCase.Status => IpcAccess.Read,
        IpcRequest.BodyOneofCase.ListCollectors => IpcAccess.Read,
        IpcRequest.BodyOneofCase.Metrics => IpcAccess.Read,
        IpcRequest.BodyOneofCase.Health => IpcAccess.Read,
        IpcRequest.BodyOneofCase.RulesList => IpcAccess.Read,
        // A collector's output may hold what only the agent's user should read (paths, arguments, errors).
        IpcRequest.BodyOneofCase.CollectorLogs => IpcAccess.Operate,
        // Retained messages (alerts, lifecycle) are read as an operator reads them on the bus.
        IpcRequest.BodyOneofCase.Retained => IpcAccess.Operate,
        IpcRequest.BodyOneofCase.CollectorCommand => action switch
        {
            CollectorAction.Health => IpcAccess.Read,
            // Unspecified is refused by the supervisor anyway; an operator gets that error, a reader this one.
            CollectorAction.Start or CollectorAction.Stop or CollectorAction.Restart or CollectorAction.Unspecified => IpcAccess.Operate,
            _ => null,
        },
        // A task sets collectors to work; rules test and run take a fresh snapshot through a task (and run publishes alerts).
        IpcRequest.BodyOneofCase.TaskRun => IpcAccess.Operate,
        IpcRequest.BodyOneofCase.RulesTest => IpcAccess.Operate,
        IpcRequest.BodyOneofCase.RulesRun => IpcAccess.Operate,
        _ => null,
    };

    /// <summary>The operation as the CLI names it (<c>collectors stop</c>, <c>task run</c>...), without client-supplied text.</summary>
    public static string Name(IpcRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        return request.BodyCase switch
        {
            IpcRequest.BodyOneofCase.None => "an empty request",
            IpcRequest.BodyOneofCase.Status => "status",
            IpcRequest.BodyOneofCase.ListCollectors => "collectors list",
            IpcRequest.BodyOneofCase.Metrics => "metrics",
            IpcRequest.BodyOneofCase.Health => "health",
            IpcRequest.BodyOneofCase.RulesList => "rules list",
            IpcRequest.BodyOneofCase.CollectorCommand => request.CollectorCommand.Action switch
            {
                CollectorAction.Start => "collectors start",
                CollectorAction.Stop => "collectors stop",
                CollectorAction.Restart => "collectors restart",
                CollectorAction.Health => "collectors health",
                CollectorAction.Unspecified => "collectors (no action)",
                var other => $"collectors action {(int)other}",
            },
            IpcRequest.BodyOneofCase.TaskRun => "task run",
            IpcRequest.BodyOneofCase.RulesTest => "rules test",
            IpcRequest.BodyOneofCase.RulesRun => "rules run",
            IpcRequest.BodyOneofCase.CollectorLogs => "logs",
            IpcRequest.BodyOneofCase.Retained => "subscribe --last",
            var other => $"IPC request {(int)other}",
        };
    }
}
